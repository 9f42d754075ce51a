"""Augmentations on whole batches of images (N, C, H, W): no per-sample Python work."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(x: torch.Tensor, g: torch.Generator | None, max_shift: float = 0.1,
                  max_degrees: float = 10.0) -> torch.Tensor:
    """Random shift (fraction of the image size) and rotation for each image, in one
    ``grid_sample`` call over the batch."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=g) * 2 - 1) * math.radians(max_degrees)
    shift = (torch.rand(n, 2, generator=g) * 2 - 1) * max_shift * 2  # grid spans [-1, 1]
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1).to(x)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def natural_augment(x: torch.Tensor, g: torch.Generator | None, min_scale: float = 0.6,
                    jitter: float = 0.2) -> torch.Tensor:
    """The usual augmentation of photos, on a batch of 0-255 images (N, C, H, W) in one
    ``grid_sample``: a random resized crop (``min_scale`` to all of the area, aspect 3:4 to
    4:3) mirrored left-right half the time, then mild colour jitter (brightness, contrast and,
    for RGB, saturation, each by up to ``jitter``)."""
    n, c = x.shape[:2]
    area = min_scale + (1 - min_scale) * torch.rand(n, generator=g)
    aspect = torch.exp((torch.rand(n, generator=g) * 2 - 1) * math.log(4 / 3))
    w = (area * aspect).sqrt().clamp(max=1)  # of the image's width and height
    h = (area / aspect).sqrt().clamp(max=1)
    cx = (torch.rand(n, generator=g) * 2 - 1) * (1 - w)  # the crop stays inside the image
    cy = (torch.rand(n, generator=g) * 2 - 1) * (1 - h)
    flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    zero = torch.zeros(n)
    theta = torch.stack([torch.stack([w * flip, zero, cx], 1),
                         torch.stack([zero, h, cy], 1)], 1).to(x)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x.float(), grid, align_corners=False, padding_mode="border")

    def factor() -> torch.Tensor:
        return _per_image(1 + (torch.rand(n, generator=g) * 2 - 1) * jitter, x)

    x = x * factor()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = mean + factor() * (x - mean)
    if c == 3:
        gray = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
                ).sum(1, keepdim=True)
        x = gray + factor() * (x - gray)
    return x.clamp(0, 255)


# ---------------------------------------------------------------------------- semi-supervised views
# FixMatch-style weak and strong views of unlabeled batches. Images arrive standardised; the ops
# work on [0, 1] intensities, recovered from the batch's own range (black and white pixels occur
# in every MNIST batch), so no dataset statistics are needed. Token batches are ``(ids, lengths)``,
# right-padded with ``pad_id``.

Batch = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
PAD_ID = 0


def _to_unit(x: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    lo, hi = float(x.amin()), float(x.amax())
    return (x.float() - lo) / max(hi - lo, 1e-6), lo, hi


def _from_unit(u: torch.Tensor, lo: float, hi: float, like: torch.Tensor) -> torch.Tensor:
    return (u * (hi - lo) + lo).to(like.dtype)


def _affine(x: torch.Tensor, angle: torch.Tensor, shear: torch.Tensor, shift: torch.Tensor
            ) -> torch.Tensor:
    """Per-image rotation (radians), shear (x, y) and shift (fraction of size) in one warp;
    zeros (black in [0, 1]) fill what comes in."""
    cos, sin = angle.cos(), angle.sin()
    a = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    s = torch.eye(2).repeat(len(x), 1, 1)
    s[:, 0, 1], s[:, 1, 0] = shear[:, 0], shear[:, 1]
    theta = torch.cat([a @ s, (shift * 2).unsqueeze(2)], 2).to(x)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ImageEnhance: ``b + factor * (a - b)``, clipped to [0, 1]."""
    return (b + _per_image(factor, a) * (a - b)).clamp(0, 1)


def _per_image(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-image values (drawn on the CPU generator) shaped to broadcast over a batch."""
    return v.to(like.device, like.dtype).view(-1, 1, 1, 1)


def _signed(m: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    return torch.where(torch.rand(len(m), generator=g) < 0.5, -m, m)


def _geometric(kind: str):
    def op(u: torch.Tensor, m: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        z, v = torch.zeros(len(u)), _signed(m, g)
        angle = v * math.radians(30) if kind == "rotate" else z
        shear = torch.stack([v * 0.3 if kind == "shear_x" else z,
                             v * 0.3 if kind == "shear_y" else z], 1)
        shift = torch.stack([v * 0.3 if kind == "translate_x" else z,
                             v * 0.3 if kind == "translate_y" else z], 1)
        return _affine(u, angle, shear, shift)
    return op


def _sharpness(u: torch.Tensor, m: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    kernel = torch.tensor([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=u.dtype) / 13
    c = u.shape[1]
    smooth = F.conv2d(F.pad(u, (1, 1, 1, 1), mode="replicate"), kernel.expand(c, 1, 3, 3),
                      groups=c)
    return _blend(u, smooth, 1 + _signed(m, g) * 0.9)


def _solarize(u: torch.Tensor, m: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    return torch.where(u >= _per_image(1 - m, u), 1 - u, u)


def _posterize(u: torch.Tensor, m: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    levels = _per_image(2 ** (8 - (m * 4).round()), u)  # 8 bits down to 4
    return torch.floor(u * (levels - 1) + 0.5) / (levels - 1)


def _autocontrast(u: torch.Tensor, m: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    lo = u.amin(dim=(2, 3), keepdim=True)
    hi = u.amax(dim=(2, 3), keepdim=True)
    return ((u - lo) / (hi - lo).clamp(min=1e-6)).clamp(0, 1)


IMAGE_OPS = {  # RandAugment's ops that make sense for digits (no flips, no colour); m in [0, 1]
    "identity": lambda u, m, g: u,
    "autocontrast": _autocontrast,
    "brightness": lambda u, m, g: _blend(u, torch.zeros_like(u), 1 + _signed(m, g) * 0.9),
    "contrast": lambda u, m, g: _blend(u, u.mean(dim=(1, 2, 3), keepdim=True).expand_as(u),
                                       1 + _signed(m, g) * 0.9),
    "sharpness": _sharpness,
    "solarize": _solarize,
    "posterize": _posterize,
    "rotate": _geometric("rotate"),
    "shear_x": _geometric("shear_x"),
    "shear_y": _geometric("shear_y"),
    "translate_x": _geometric("translate_x"),
    "translate_y": _geometric("translate_y"),
}


def rand_augment(u: torch.Tensor, g: torch.Generator | None, num_ops: int = 2,
                 magnitude: float = 1.0) -> torch.Tensor:
    """RandAugment on [0, 1] images: each image gets ``num_ops`` ops drawn at random, each with a
    random strength in [0, magnitude] (FixMatch's RA variant). Batched per op, not per image."""
    ops = list(IMAGE_OPS.values())
    u = u.clone()
    for _ in range(num_ops):
        pick = torch.randint(len(ops), (len(u),), generator=g)
        strength = torch.rand(len(u), generator=g) * magnitude
        for k, op in enumerate(ops):
            sel = (pick == k).nonzero().squeeze(1)
            if len(sel):
                u[sel] = op(u[sel], strength[sel], g).to(u.dtype)
    return u


def cutout(u: torch.Tensor, g: torch.Generator | None, size: float = 0.5,
           fill: float = 0.5) -> torch.Tensor:
    """Paint one square of side ``size`` (fraction of the image) per image with ``fill``, at a
    random centre (squares may run off the edge, as in the FixMatch code)."""
    n, _, h, w = u.shape
    half = size * torch.tensor([h, w], dtype=torch.float32) / 2
    centre = torch.rand(n, 2, generator=g) * torch.tensor([h, w], dtype=torch.float32)
    rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    inside = ((rows - centre[:, 0].view(-1, 1, 1)).abs() < half[0]) & \
             ((cols - centre[:, 1].view(-1, 1, 1)).abs() < half[1])
    return u.masked_fill(inside.unsqueeze(1).to(u.device), fill)


def token_dropout(ids: torch.Tensor, lengths: torch.Tensor, g: torch.Generator | None,
                  p: float = 0.1, pad_id: int = PAD_ID) -> tuple[torch.Tensor, torch.Tensor]:
    """Delete each real token with probability ``p`` (at least one stays); survivors move left
    so the batch stays right-padded and ``lengths`` shrink to match."""
    steps = torch.arange(ids.shape[1], device=ids.device)
    valid = steps < lengths.unsqueeze(1)
    keep = valid & (torch.rand(ids.shape, generator=g).to(ids.device) >= p)
    keep[:, 0] |= ~keep.any(1)  # an empty review would break the RNN
    new_len = keep.sum(1)
    slot = torch.where(keep, keep.cumsum(1) - 1, ids.shape[1] - 1)  # dropped: harmless scratch
    out = torch.full_like(ids, pad_id)
    out.scatter_(1, slot, torch.where(keep, ids, pad_id))
    out[steps >= new_len.unsqueeze(1)] = pad_id  # clear the scratch column when it was written
    return out, new_len.to(lengths.dtype)


def token_swap(ids: torch.Tensor, lengths: torch.Tensor, g: torch.Generator | None,
               p: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Swap adjacent real tokens: pairs start at positions of one random parity per sequence
    (so swaps never overlap), each chosen with probability ``p``. Lengths are unchanged."""
    n, t = ids.shape
    steps = torch.arange(t).expand(n, t)
    parity = torch.randint(2, (n, 1), generator=g)
    start = ((steps % 2) == parity) & (steps + 1 < lengths.cpu().unsqueeze(1)) \
        & (torch.rand(n, t, generator=g) < p)
    src = steps.clone()
    src[start] += 1
    src[:, 1:][start[:, :-1]] -= 1  # the partner of a swapped start takes the start's token
    return ids.gather(1, src.to(ids.device)), lengths


def _blur_matrix(size: int, sigma: float) -> torch.Tensor:
    """``M`` with ``v @ M`` = ``v`` blurred by a Gaussian of ``sigma`` (reflected at the ends,
    as ``F.pad(mode="reflect")``): blurring a 28x28 field is then two small matmuls, much
    cheaper on a CPU than depthwise convolutions with a 25-tap kernel."""
    radius = min(max(int(3 * sigma), 1), size - 1)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-t**2 / (2 * sigma**2))
    k = k / k.sum()
    eye = F.pad(torch.eye(size).unsqueeze(1), (radius, radius), mode="reflect")
    return F.conv1d(eye, k.view(1, 1, -1)).squeeze(1)


def elastic(u: torch.Tensor, g: torch.Generator | None, alpha: float = 34.0,
            sigma: float = 4.0) -> torch.Tensor:
    """Elastic distortion (Simard et al. 2003, the classic MNIST augmentation): a random
    displacement field, uniform in [-1, 1] per pixel, smoothed by a Gaussian of ``sigma`` pixels
    and scaled by ``alpha`` pixels, warps each image (one ``grid_sample`` for the batch)."""
    n, _, h, w = u.shape
    field = torch.rand(n, 2, h, w, generator=g) * 2 - 1
    field = _blur_matrix(h, sigma).T @ (field @ _blur_matrix(w, sigma))  # rows, then columns
    base = F.affine_grid(torch.eye(2, 3).expand(n, 2, 3), [n, 1, h, w], align_corners=False)
    # pixels to grid units ([-1, 1] spans w and h): dx * 2 / w, dy * 2 / h
    shift = torch.stack([field[:, 0] * 2 / w, field[:, 1] * 2 / h], -1) * alpha
    return F.grid_sample(u, (base + shift).to(u), align_corners=False, padding_mode="zeros")


def weak_view(x: Batch, g: torch.Generator | None = None, max_shift: float = 0.125,
              **_: float) -> Batch:
    """Images: a small random shift (no flips: digits are not mirror-symmetric). Text: as is."""
    if isinstance(x, tuple | list):
        return tuple(x)
    u, lo, hi = _to_unit(x)
    return _from_unit(_affine(u, torch.zeros(len(u)), torch.zeros(len(u), 2),
                              (torch.rand(len(u), 2, generator=g) * 2 - 1) * max_shift),
                      lo, hi, x)


def strong_view(x: Batch, g: torch.Generator | None = None, max_shift: float = 0.125,
                num_ops: int = 2, magnitude: float = 1.0, cutout_size: float = 0.5,
                token_drop: float = 0.1, token_swaps: float = 0.1, pad_id: int = PAD_ID,
                elastic_alpha: float = 0.0, elastic_sigma: float = 4.0) -> Batch:
    """Images: the weak shift, an elastic distortion (when ``elastic_alpha`` > 0, in pixels),
    RandAugment and cutout. Text: token dropout, then swaps."""
    if isinstance(x, tuple | list):
        ids, lengths = token_dropout(*x, g, token_drop, pad_id)
        return token_swap(ids, lengths, g, token_swaps)
    u, lo, hi = _to_unit(weak_view(x, g, max_shift))
    if elastic_alpha > 0:
        u = elastic(u, g, elastic_alpha, elastic_sigma)
    u = rand_augment(u, g, num_ops, magnitude)
    if cutout_size > 0:
        u = cutout(u, g, cutout_size)
    return _from_unit(u, lo, hi, x)


# the view options a training method may set, with their ranges (inclusive)
VIEW_OPTIONS = {"max_shift": (0.0, 0.5), "num_ops": (0, 14), "magnitude": (0.0, 1.0),
                "cutout_size": (0.0, 1.0), "token_drop": (0.0, 0.9), "token_swaps": (0.0, 1.0),
                # pixels; sigma 0 would divide by zero in the blur kernel
                "elastic_alpha": (0.0, 100.0), "elastic_sigma": (0.5, 20.0)}


def check_view_options(options: dict, where: str) -> None:
    """Unknown view options and values out of range fail before training, named."""
    for key, value in options.items():
        if key not in VIEW_OPTIONS:
            raise ValueError(f"{where}.{key} is not a view option; choose from "
                             f"{', '.join(VIEW_OPTIONS)}")
        low, high = VIEW_OPTIONS[key]
        kind = int if isinstance(low, int) else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
            raise ValueError(f"{where}.{key} must be a {'whole ' if kind is int else ''}number "
                             f"in [{low}, {high}], got {value!r}")
