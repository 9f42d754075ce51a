"""Weak and strong views for semi-supervised training: images and (ids, lengths) token batches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dlexp.data.augment import (
    IMAGE_OPS,
    _blur_matrix,
    check_view_options,
    cutout,
    elastic,
    rand_augment,
    strong_view,
    token_dropout,
    token_swap,
    weak_view,
)
from dlexp.data.mnist import normalize


def _digits(n: int = 16) -> torch.Tensor:
    x = torch.zeros(n, 1, 28, 28, dtype=torch.uint8)
    x[:, :, 6:22, 10:18] = 255  # a bright bar on black, standardised like real batches
    return normalize(x)


def _tokens(n: int = 32, t: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, t + 1, (n,), generator=g)
    lengths[0] = t
    ids = torch.randint(1, 1000, (n, t), generator=g)
    ids[torch.arange(t) >= lengths.unsqueeze(1)] = 0  # right padding
    return ids, lengths


def test_image_views_keep_shape_dtype_and_range() -> None:
    x = _digits()
    g = torch.Generator().manual_seed(0)
    for view in (weak_view(x, g), strong_view(x, g)):
        assert view.shape == x.shape and view.dtype == x.dtype
        assert view.min() >= x.min() - 1e-4 and view.max() <= x.max() + 1e-4


def test_strong_differs_from_weak_more_than_weak_from_the_original() -> None:
    x = _digits(64)
    weak = weak_view(x, torch.Generator().manual_seed(0))
    strong = strong_view(x, torch.Generator().manual_seed(0))
    assert not torch.equal(weak, strong)
    assert (strong - x).abs().mean() > (weak - x).abs().mean()


def test_every_image_op_keeps_shape_and_unit_range() -> None:
    u = torch.rand(6, 1, 28, 28)
    g = torch.Generator().manual_seed(0)
    for name, op in IMAGE_OPS.items():
        out = op(u, torch.rand(6, generator=g), g)
        assert out.shape == u.shape, name
        assert out.min() >= 0 and out.max() <= 1 + 1e-6, name
    assert rand_augment(u, g).shape == u.shape


def test_cutout_paints_one_square_per_image() -> None:
    out = cutout(torch.ones(8, 1, 28, 28), torch.Generator().manual_seed(0), size=0.5, fill=0.0)
    painted = (out == 0).flatten(1).sum(1)
    assert (painted > 0).all() and (painted <= 14 * 14).all()


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_token_dropout_keeps_order_padding_and_valid_lengths(p: float) -> None:
    ids, lengths = _tokens()
    out, new = token_dropout(ids, lengths, torch.Generator().manual_seed(1), p)
    assert out.shape == ids.shape and out.dtype == ids.dtype and new.dtype == lengths.dtype
    assert (new >= 1).all() and (new <= lengths).all()
    assert (out[torch.arange(ids.shape[1]) >= new.unsqueeze(1)] == 0).all()  # padded right
    for row in range(len(ids)):  # survivors are a subsequence of the original
        kept, orig = out[row, : new[row]].tolist(), iter(ids[row, : lengths[row]].tolist())
        assert all(tok in orig for tok in kept)
    if p == 0.0:
        assert torch.equal(out, ids) and torch.equal(new, lengths)


def test_token_swap_permutes_within_each_sequence() -> None:
    ids, lengths = _tokens()
    out, new = token_swap(ids, lengths, torch.Generator().manual_seed(2), p=0.5)
    assert torch.equal(new, lengths) and not torch.equal(out, ids)
    for row in range(len(ids)):
        n = lengths[row]
        assert sorted(out[row, :n].tolist()) == sorted(ids[row, :n].tolist())
        assert (out[row, n:] == 0).all()
        moved = (out[row, :n] != ids[row, :n]).nonzero().squeeze(1)
        assert all(ids[row, i] in ids[row, max(i - 1, 0): i + 2] for i in moved.tolist())


def test_text_views() -> None:
    ids, lengths = _tokens()
    w = weak_view((ids, lengths))
    assert torch.equal(w[0], ids) and torch.equal(w[1], lengths)
    s_ids, s_len = strong_view((ids, lengths), torch.Generator().manual_seed(0), token_drop=0.2)
    assert s_ids.shape == ids.shape and (s_len >= 1).all() and (s_len <= lengths).all()
    assert not torch.equal(s_ids, ids)


# ---------------------------------------------------------------------------- elastic
def _strokes(n: int = 8) -> torch.Tensor:
    """A thin vertical stroke per image, in [0, 1] intensities."""
    u = torch.zeros(n, 1, 28, 28)
    u[:, :, 6:22, 12:16] = 1.0
    return u


def test_elastic_warps_smoothly_and_keeps_range() -> None:
    u = _strokes()
    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(elastic(u, g, alpha=0.0), u)  # no displacement: the identity
    out = elastic(u, g, alpha=34.0, sigma=4.0)
    assert out.shape == u.shape and out.min() >= 0 and out.max() <= 1
    changed = (out - u).abs().flatten(1).sum(1)
    assert (changed > 1).all()  # every image moved ...
    mass = out.flatten(1).sum(1) / u.flatten(1).sum(1)
    assert ((mass > 0.6) & (mass < 1.4)).all()  # ... but stays one stroke of similar ink
    assert not torch.equal(out[0], out[1])  # each image has its own field


def test_blur_matrix_is_a_reflect_padded_gaussian_convolution() -> None:
    sigma, radius = 4.0, 12
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-t**2 / (2 * sigma**2))
    k = (k / k.sum()).view(1, 1, 1, -1)
    field = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    ref = F.conv2d(F.pad(field, (radius, radius, 0, 0), mode="reflect"), k)  # along rows
    torch.testing.assert_close(field @ _blur_matrix(28, sigma), ref)
    torch.testing.assert_close(_blur_matrix(28, sigma).sum(0), torch.ones(28))  # keeps mass


def test_strong_view_applies_elastic_only_when_asked() -> None:
    x = normalize((_strokes() * 255).to(torch.uint8))
    opts = {"max_shift": 0.0, "num_ops": 0, "cutout_size": 0.0}
    plain = strong_view(x, torch.Generator().manual_seed(0), **opts)
    torch.testing.assert_close(plain, x)
    warped = strong_view(x, torch.Generator().manual_seed(0), elastic_alpha=34.0, **opts)
    assert (warped - x).abs().mean() > 0.05


def test_elastic_options_are_checked() -> None:
    check_view_options({"elastic_alpha": 34.0, "elastic_sigma": 4.0}, "method.task.augment")
    with pytest.raises(ValueError, match=r"method.task.augment.elastic_sigma must be .*got 0"):
        check_view_options({"elastic_sigma": 0}, "method.task.augment")
