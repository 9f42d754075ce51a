"""Inputs as the networks saw them in training, shared by ``dlexp.load``, ``dlexp-predict`` and
``dlexp-demo`` so that they cannot disagree: any image as an MNIST digit, a review as the
token ids training kept. Bad input raises ``ValueError`` with a one-line message that does not
name the input (callers know what to call it)."""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image, ImageOps
from tokenizers import Tokenizer

from dlexp.data.tokenizer import encode_truncated

ImageInput = str | Path | IO[bytes] | Image.Image | np.ndarray

DIGIT_BOX, CANVAS = 20, 28  # MNIST digits fit a 20x20 box centred on a 28x28 canvas
BLANK_CONTRAST = 8  # grey levels: less between darkest and lightest pixel is no ink (JPEG noise)
# any phone photo fits; a 14000x14000 PNG of a few kB would need 200 MB to 800 MB decoded, so
# larger images are refused from their header, before decoding (Pillow's own limit is 2x89 MP)
MAX_PIXELS = 50_000_000
TOO_LARGE = f"image too large (over {MAX_PIXELS // 1_000_000} megapixels): scale it down"
# float images up to this are in [0, 1]: bicubic resampling overshoots 1 a little, and on the
# 0-255 scale such an image would be black anyway
UNIT_MAX = 2.0
WIDE_MODES = {"I", "F", "I;16", "I;16L", "I;16B", "I;16N"}  # convert("L") clips these
# reviews of a model trained without data.max_len are read whole; IMDB's longest is ~14k
MAX_UNTRUNCATED_CHARS = 100_000
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
TEXT_SUFFIXES = (".txt",)


# ------------------------------------------------------------------------------ files
def files_in(folder: str | Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The files under ``folder`` (all depths, symlinked folders followed) whose suffix is one
    of ``suffixes`` (any case), sorted. Hidden files and folders are left out: ``.DS_Store``,
    macOS' ``._photo.jpg`` copies and ``.ipynb_checkpoints`` hold no inputs."""
    found = []
    for top, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(top, n) for n in names
                  if not n.startswith(".") and n.lower().endswith(suffixes)]
    return sorted(found)


def read_text_file(path: str | Path) -> str:
    """A text file's content (UTF-8, a byte-order mark dropped). ValueError when it cannot be
    read or is not UTF-8."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ValueError("no such file") from None
    except OSError as e:
        raise ValueError(f"cannot read file: {e.strerror or e}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 (byte {e.start})") from None




# ------------------------------------------------------------------------------ images
def load_image(source: ImageInput) -> torch.Tensor:
    """Any image (a file, an open binary file, a PIL image or an array) as MNIST sees digits:
    16-bit and float images scaled to 0-255, transparency flattened, grayscale, light ink on a
    dark background (inverted when the border is light), cropped to the ink, scaled into 20x20
    and placed on 28x28 with its centre of mass in the middle.
    Returns uint8 of shape (1, 28, 28); ValueError for an unreadable, huge or blank image."""
    image = _decoded(source)
    try:
        gray = _gray(image)
    except (ValueError, OSError) as e:  # a mode Pillow cannot convert (LAB, ...)
        raise ValueError(f"cannot read image: {_first_line(e)}") from None
    if _blank(gray):
        raise ValueError("no digit found: the image is blank")
    return _mnist_digit(gray)


def _mnist_digit(gray: Image.Image) -> torch.Tensor:
    pixels = np.asarray(gray)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if border.mean() > 127:  # dark digit on light paper: flip to MNIST's light-on-dark
        gray = ImageOps.invert(gray)
    box = gray.point(lambda p: 255 if p > 50 else 0).getbbox()
    digit = gray.crop(box) if box else gray
    scale = DIGIT_BOX / max(digit.size)
    size = (max(1, round(digit.width * scale)), max(1, round(digit.height * scale)))
    digit = digit.resize(size, Image.Resampling.LANCZOS)
    canvas = Image.new("L", (CANVAS, CANVAS))
    canvas.paste(digit, _centre_of_mass_offset(np.asarray(digit, dtype=np.float64)))
    return torch.from_numpy(np.asarray(canvas).copy()).unsqueeze(0)


def _decoded(source: ImageInput, draft: Callable[[Image.Image], None] | None = None
             ) -> Image.Image:
    """A decoded image, upright (EXIF orientation applied); files refused by size first.
    ``draft`` may lower a file's decoding resolution before its pixels are read (JPEG)."""
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, Image.Image):
        return _upright(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(source)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError(TOO_LARGE) from None
    except FileNotFoundError:
        raise ValueError("no such file") from None
    except Exception as e:  # untrusted bytes: whatever the decoders raise means "unreadable"
        raise ValueError(f"cannot read image: {_first_line(e)}") from None
    with im:
        if draft is not None:
            draft(im)
        return _upright(im)


def _upright(im: Image.Image) -> Image.Image:
    """The decoded pixels, EXIF orientation applied, as a copy that outlives ``im``'s file;
    too large ones refused from the header, before decoding."""
    _check_size(im.size)
    try:
        return ImageOps.exif_transpose(im)  # loads the pixels
    except Exception as e:  # a truncated or corrupt file fails only when decoded
        raise ValueError(f"cannot read image: {_first_line(e)}") from None


def _check_size(size: tuple[int, int]) -> None:
    if size[0] * size[1] > MAX_PIXELS:
        raise ValueError(TOO_LARGE)
    if min(size) < 1:
        raise ValueError("the image is empty (no pixels)")


MEMORY_FILE = re.compile(r" ?<_io\.BytesIO object at 0x[0-9a-f]+>")


def _first_line(exc: BaseException) -> str:
    text = MEMORY_FILE.sub("", str(exc)).strip()  # a file read from memory has no name
    return text.splitlines()[0] if text else type(exc).__name__


def _from_array(array: np.ndarray) -> Image.Image:
    """(H, W) gray, (H, W, 1|3|4) or (1, H, W) arrays of any real dtype: uint8 as is, the
    others scaled as 16-bit and float images are."""
    a = array[0] if array.ndim == 3 and array.shape[0] == 1 else array
    a = a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"an image array must be (H, W) or (H, W, 3|4), got {array.shape}")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool) \
            or np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"an image array must hold real numbers, got {a.dtype}")
    _check_size((a.shape[1], a.shape[0]))
    if a.dtype != np.uint8:
        a = _to_uint8(a.astype(np.float64), sixteen_bit=a.dtype == np.uint16,
                      unit=a.dtype == bool or np.issubdtype(a.dtype, np.floating))
    return Image.fromarray(np.ascontiguousarray(a))


def _gray(im: Image.Image) -> Image.Image:
    """8-bit grayscale, transparency flattened."""
    if im.mode in WIDE_MODES:
        im = _eight_bit(im)
    return _opaque(im).convert("L")


def _eight_bit(im: Image.Image) -> Image.Image:
    """A 16-bit or 32-bit integer or float image as 8-bit "L" (or "LA" when one value is
    transparent), scaled by its nominal range: Pillow's convert("L") clips at 255, so a 16-bit
    scan reads all white."""
    values = np.asarray(im).astype(np.float64)
    gray = Image.fromarray(_to_uint8(values, sixteen_bit=im.mode.startswith("I;16"),
                                     unit=im.mode == "F"))
    clear = im.info.get("transparency")  # a 16-bit PNG's tRNS: one grey value is transparent
    if not isinstance(clear, int | float):
        return gray
    alpha = Image.fromarray(np.where(values == clear, 0, 255).astype(np.uint8))
    return Image.merge("LA", (gray, alpha))


def _to_uint8(values: np.ndarray, sixteen_bit: bool, unit: bool) -> np.ndarray:
    """0-255 from 16-bit data (/257), float data in [0, 1] (x255), data already in 0-255, other
    16-bit-range data, and anything larger (scaled by its maximum)."""
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    top = float(values.max()) if values.size else 0.0
    if sixteen_bit:
        scale = 255 / 65535
    elif unit and top <= UNIT_MAX:
        scale = 255.0
    elif top <= 255:
        scale = 1.0
    else:
        scale = 255 / 65535 if top <= 65535 else 255 / top
    return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)


def _opaque(im: Image.Image, mode: str = "L") -> Image.Image:
    """Transparency flattened onto white: drawing apps export dark ink on a transparent
    background whose hidden colour is often black, so ``convert("L")`` alone would read all
    black. Onto black instead when that leaves nothing (light ink on transparent). The result
    is in ``mode`` (``L`` or ``RGB``) when there was transparency, else ``im`` as it is."""
    if im.mode not in ("RGBA", "LA", "PA", "RGBa") and "transparency" not in im.info:
        return im
    rgba = im.convert("RGBA")
    for colour in ((255, 255, 255, 255), (0, 0, 0, 255)):
        flat = Image.alpha_composite(Image.new("RGBA", rgba.size, colour), rgba)
        if not _blank(flat.convert("L")):
            break
    return flat.convert(mode)


def _blank(gray: Image.Image) -> bool:
    lo, hi = gray.getextrema()
    return hi - lo < BLANK_CONTRAST


def _centre_of_mass_offset(ink: np.ndarray) -> tuple[int, int]:
    """Where to paste so the ink's centre of mass lands on the canvas centre, as MNIST did."""
    h, w = ink.shape
    total = ink.sum()
    if total == 0:
        return (CANVAS - w) // 2, (CANVAS - h) // 2
    cy = (ink.sum(1) * np.arange(h)).sum() / total
    cx = (ink.sum(0) * np.arange(w)).sum() / total
    x = int(np.clip(round(CANVAS / 2 - cx), 0, CANVAS - w))
    y = int(np.clip(round(CANVAS / 2 - cy), 0, CANVAS - h))
    return x, y


# ------------------------------------------------------------------------------ own images
RESIZE = ("squish", "crop", "pad")
# files whose EXIF orientation turns them a quarter: their stored width is the shown height
QUARTER_TURNS = {5, 6, 7, 8}
EXIF_ORIENTATION = 0x0112


def load_picture(source: ImageInput, size: Sequence[int], channels: int,
                 resize: str = "squish") -> torch.Tensor:
    """Any image as a ``data=image_folder`` model saw its training images (training decodes
    with this too): upright (EXIF), 16-bit and float images scaled to 0-255, palette and
    transparency flattened as :func:`load_image` does, ``channels`` 1 (gray) or 3 (RGB), and
    ``size`` (H, W) by ``resize``: ``squish`` (stretched to it), ``crop`` (scaled to cover it,
    centre cropped) or ``pad`` (scaled to fit, centred on black).
    Returns uint8 of shape (channels, H, W); ValueError for an unreadable or huge image."""
    pixels = torch.from_numpy(np.asarray(picture(source, size, channels, resize)).copy())
    return pixels.unsqueeze(0) if pixels.ndim == 2 else pixels.permute(2, 0, 1).contiguous()


def picture(source: ImageInput, size: Sequence[int], channels: int, resize: str = "squish",
            inspect: Callable[[Image.Image], None] | None = None) -> Image.Image:
    """:func:`load_picture`'s image, as a PIL image ("L" or "RGB") of ``size``. ``inspect``
    sees a file's image once opened, before its pixels are decoded (what the header says)."""
    height, width = int(size[0]), int(size[1])

    def opened(im: Image.Image) -> None:
        if inspect is not None:
            inspect(im)
        _draft(im, (width, height), channels, resize)

    image = _decoded(source, opened)
    mode = "L" if channels == 1 else "RGB"
    try:
        if image.mode in WIDE_MODES:
            image = _eight_bit(image)
        image = _opaque(image, mode)
        if image.mode != mode:
            image = image.convert(mode)
    except (ValueError, OSError) as e:  # a mode Pillow cannot convert (LAB, ...)
        raise ValueError(f"cannot read image: {_first_line(e)}") from None
    return _resized(image, (width, height), resize)


def _resized(image: Image.Image, size: tuple[int, int], resize: str) -> Image.Image:
    """``image`` at ``size`` (W, H); bilinear with Pillow's antialiasing, as torchvision's
    ``Resize``."""
    if image.size == size:
        return image
    method = Image.Resampling.BILINEAR
    if resize == "crop":
        return ImageOps.fit(image, size, method)
    if resize == "pad":
        return ImageOps.pad(image, size, method, color=0)
    return image.resize(size, method)


def _draft(im: Image.Image, size: tuple[int, int], channels: int, resize: str) -> None:
    """Decode a JPEG at 1/2, 1/4 or 1/8 scale when the result still covers what ``resize``
    needs of it (the DCT does the downscaling): a photo decodes several times faster."""
    if im.format != "JPEG":
        return
    try:
        turned = im.getexif().get(EXIF_ORIENTATION) in QUARTER_TURNS
    except Exception:  # a broken EXIF block: decode at full size, _upright copes
        turned = False
    w, h = im.size
    out_w, out_h = (size[1], size[0]) if turned else size  # in the file's own orientation
    if resize in ("crop", "pad"):  # the size before cropping or padding
        s = (max if resize == "crop" else min)(out_w / w, out_h / h)
        out_w, out_h = max(1, math.ceil(w * s)), max(1, math.ceil(h * s))
    im.draft("L" if channels == 1 else None, (out_w, out_h))


def normalize_images(images: list[torch.Tensor], data: dict) -> torch.Tensor:
    """A float batch [N, 1, 28, 28] from :func:`load_image` outputs (or [N, *in_shape] from
    :func:`load_sample`), standardised as in training (``data``: the checkpoint's data
    description)."""
    batch = torch.stack(images).float()
    if own_arrays(data):
        from dlexp.data.arrays import normalize_arrays

        return normalize_arrays(batch, data["mean"], data["std"])
    return (batch / 255 - data["mean"]) / data["std"]


# ------------------------------------------------------------------------------ own arrays
def own_arrays(data: dict) -> bool:
    """Whether a checkpoint's data description gives its input spec as ``data=arrays`` does
    (``input_shape``, per-channel ``mean``/``std``), rather than MNIST's fixed digits."""
    return "input_shape" in data and data.get("modality") != "text"


def load_sample(source: ImageInput, data: dict) -> torch.Tensor:
    """One input of a ``data=arrays`` (or ``dlexp.fit``) model, in the network's layout: an
    array of the training samples' shape ((H, W), (H, W, C) or (D,)), a ``.npy`` file holding
    one, or (image models) an image file or PIL image, converted to the training channels and
    resized to the training size, as 0-255 pixels. ValueError when it cannot fit."""
    shape = tuple(data["input_shape"])
    if isinstance(source, str | Path) and str(source).endswith(".npy"):
        try:
            source = np.load(source, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read .npy file: {_first_line(e)}") from None
    if isinstance(source, np.ndarray | torch.Tensor):
        return _sample_array(np.asarray(source), shape)
    if data["modality"] != "image":
        raise ValueError(f"this model takes feature arrays of shape {shape} (a NumPy array or "
                         "a .npy file), not images")
    image = _decoded(source).convert("L" if shape[0] == 1 else "RGB")
    image = image.resize((shape[2], shape[1]), Image.Resampling.LANCZOS)
    return _sample_array(np.asarray(image), shape)


def _sample_array(a: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool) \
            or np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"an input must hold real numbers, got {a.dtype}")
    t = torch.from_numpy(np.ascontiguousarray(a if a.dtype == np.uint8 else a.astype(np.float32)))
    if len(shape) == 3 and t.ndim == 2:
        t = t.unsqueeze(0)
    elif len(shape) == 3 and t.ndim == 3:  # channels last, as the training arrays were given
        t = t.permute(2, 0, 1)
    if tuple(t.shape) != shape:
        layout = f"(H, W) or (H, W, C) = {shape[1:]} + ({shape[0]},)" if len(shape) == 3 \
            else str(shape)
        raise ValueError(f"an input of shape {tuple(a.shape)} does not fit this model, which "
                         f"takes {layout}")
    if t.is_floating_point() and not torch.isfinite(t).all():
        raise ValueError("the input holds NaN or infinite values")
    return t.contiguous()


def sample_batch(x: np.ndarray | torch.Tensor, data: dict) -> list[torch.Tensor]:
    """A batch (N, ...) of inputs in the training arrays' layout as :func:`load_sample`s."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if not own_arrays(data):  # MNIST: (N, 28, 28) digits, as mnist.load_data() gives
        data = {**data, "input_shape": data["net_kwargs"]["in_shape"], "name": "mnist"}
    return [_sample_array(sample, tuple(data["input_shape"])) for sample in a]


# ------------------------------------------------------------------------------ texts
def review_ids(tok: Tokenizer, text: str, data: dict) -> list[int]:
    """A review's token ids as training fed them: truncated to the checkpoint's
    ``max_len``/``truncate`` (``data``), tokenizing no more of a long review than that needs.
    ValueError for a non-string, text that is not valid Unicode, a blank review, or one too long
    for a model trained without ``max_len``."""
    if not isinstance(text, str):
        raise ValueError(f"a review must be a str, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: undecodable bytes in argv or a file
        raise ValueError("not valid Unicode (undecodable bytes)") from None
    max_len = data["max_len"]
    if max_len is None and len(text) > MAX_UNTRUNCATED_CHARS:
        raise ValueError(f"review too long: {len(text)} characters; this model was trained "
                         f"without data.max_len and reads at most {MAX_UNTRUNCATED_CHARS}")
    ids = encode_truncated(tok, text, max_len, data["truncate"])
    if not ids:
        raise ValueError("empty review: no words to classify")
    return ids
