"""Batch-wise random shifts and rotations."""

from __future__ import annotations

import torch

from dlexp.data.augment import random_affine


def _batch(n: int = 8) -> torch.Tensor:
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 10:18, 8:20] = 1.0  # an off-centre bar: any shift or rotation moves it
    return x


def test_keeps_shape_and_dtype() -> None:
    x = _batch()
    out = random_affine(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    out3 = random_affine(torch.rand(4, 3, 32, 32), None)
    assert out3.shape == (4, 3, 32, 32)


def test_changes_every_image() -> None:
    x = _batch()
    out = random_affine(x, torch.Generator().manual_seed(0), max_shift=0.1, max_degrees=10)
    diff = (out - x).abs().flatten(1).sum(1)
    assert (diff > 1.0).all()


def test_each_image_gets_its_own_transform() -> None:
    out = random_affine(_batch(4), torch.Generator().manual_seed(0))
    assert not torch.allclose(out[0], out[1])


def test_zero_shift_and_rotation_is_identity() -> None:
    x = torch.rand(5, 1, 28, 28)
    out = random_affine(x, torch.Generator().manual_seed(0), max_shift=0.0, max_degrees=0.0)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=1e-5)


def test_seeded_generator_is_reproducible() -> None:
    x = _batch()
    a = random_affine(x, torch.Generator().manual_seed(7))
    b = random_affine(x, torch.Generator().manual_seed(7))
    c = random_affine(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_shift_stays_within_max_shift() -> None:
    """A pure shift of at most 10% of 28 pixels moves the bar's centre by under 3 pixels."""
    x = _batch(64)
    out = random_affine(x, torch.Generator().manual_seed(0), max_shift=0.1, max_degrees=0.0)
    cols = torch.arange(28.0)

    def centre(img: torch.Tensor) -> torch.Tensor:
        w = img.sum(dim=(1, 2))  # mass per column
        return (w * cols).sum(-1) / w.sum(-1)

    moved = (centre(out) - centre(x)).abs()
    assert moved.max() <= 2.8 + 1e-3
    assert moved.max() > 1.0  # and it does shift
    torch.testing.assert_close(out.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)), rtol=0.02, atol=0.5)


def test_pixels_shifted_in_are_zero() -> None:
    x = torch.ones(16, 1, 28, 28)
    out = random_affine(x, torch.Generator().manual_seed(0), max_shift=0.2, max_degrees=0.0)
    assert out.min() == 0.0 and out.max() <= 1.0 + 1e-6
