"""IDX reader/writer: round trips, and clear DataErrors for broken files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from dlexp.data.idx import read_idx, write_idx
from dlexp.errors import DataError


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(7, 5, 4), dtype=np.uint8)


@pytest.mark.parametrize("ext", ["", ".gz"])
def test_round_trip_images(tmp_path: Path, images: np.ndarray, ext: str) -> None:
    path = tmp_path / f"imgs-idx3-ubyte{ext}"
    write_idx(path, images)
    out = read_idx(path, 2051)
    assert out.dtype == torch.uint8 and out.shape == (7, 5, 4)
    assert np.array_equal(out.numpy(), images)


@pytest.mark.parametrize("ext", ["", ".gz"])
def test_round_trip_labels(tmp_path: Path, ext: str) -> None:
    labels = np.arange(300) % 10
    path = tmp_path / f"labels-idx1-ubyte{ext}"
    write_idx(path, labels)
    out = read_idx(path, 2049)
    assert out.dtype == torch.uint8 and out.shape == (300,)
    assert out.tolist() == labels.tolist()


def test_written_bytes_follow_the_format(tmp_path: Path, images: np.ndarray) -> None:
    raw = tmp_path / "raw-idx3-ubyte"
    write_idx(raw, images)
    data = raw.read_bytes()
    assert data[:4] == (2051).to_bytes(4, "big")
    assert [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(3)] == [7, 5, 4]
    assert data[16:] == images.tobytes() and len(data) == 16 + images.size
    gz = tmp_path / "raw-idx3-ubyte.gz"
    write_idx(gz, images)
    assert gz.read_bytes()[:2] == b"\x1f\x8b"  # really gzipped
    assert gzip.decompress(gz.read_bytes()) == data


def test_write_idx_rejects_other_ranks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shape"):
        write_idx(tmp_path / "x-ubyte", np.zeros((4, 4), dtype=np.uint8))


def test_read_returns_a_writable_copy(tmp_path: Path, images: np.ndarray) -> None:
    path = tmp_path / "imgs-idx3-ubyte"
    write_idx(path, images)
    out = read_idx(path, 2051)
    out[0, 0, 0] = 1  # would fail on a read-only buffer
    assert out[0, 0, 0] == 1


@pytest.mark.parametrize("ext", ["", ".gz"])
def test_wrong_magic(tmp_path: Path, images: np.ndarray, ext: str) -> None:
    path = tmp_path / f"imgs-idx3-ubyte{ext}"
    write_idx(path, images)
    with pytest.raises(DataError, match="magic number 2051, expected 2049") as err:
        read_idx(path, 2049)
    assert str(path) in str(err.value) and "label" in str(err.value)


def test_image_magic_message(tmp_path: Path) -> None:
    path = tmp_path / "labels-idx1-ubyte"
    write_idx(path, np.zeros(3))
    with pytest.raises(DataError, match="not an MNIST image file") as err:
        read_idx(path, 2051)
    assert str(path) in str(err.value)


def test_garbage_magic(tmp_path: Path) -> None:
    path = tmp_path / "junk-ubyte"
    path.write_bytes(b"<html>not found</html>")
    with pytest.raises(DataError, match="magic number") as err:
        read_idx(path, 2051)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("ext", ["", ".gz"])
@pytest.mark.parametrize("cut", [1, 50])
def test_truncated_body(tmp_path: Path, images: np.ndarray, ext: str, cut: int) -> None:
    full = tmp_path / "full"
    write_idx(full, images)
    data = full.read_bytes()[:-cut]
    path = tmp_path / f"imgs-idx3-ubyte{ext}"
    path.write_bytes(gzip.compress(data) if ext else data)
    with pytest.raises(DataError, match="truncated or corrupt") as err:
        read_idx(path, 2051)
    assert str(path) in str(err.value)


def test_extra_bytes_are_corrupt_too(tmp_path: Path, images: np.ndarray) -> None:
    path = tmp_path / "imgs-idx3-ubyte"
    write_idx(path, images)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_idx(path, 2051)


@pytest.mark.parametrize("size", [0, 3, 7])
def test_shorter_than_a_header(tmp_path: Path, size: int) -> None:
    path = tmp_path / "tiny-ubyte"
    path.write_bytes(b"\0" * size)
    with pytest.raises(DataError, match="truncated") as err:
        read_idx(path, 2049)
    assert str(path) in str(err.value)


def test_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "imgs-idx3-ubyte"
    path.write_bytes((2051).to_bytes(4, "big") + (10).to_bytes(4, "big") + b"\0\0")
    with pytest.raises(DataError, match="truncated"):
        read_idx(path, 2051)


def test_not_gzip(tmp_path: Path, images: np.ndarray) -> None:
    path = tmp_path / "imgs-idx3-ubyte.gz"
    write_idx(tmp_path / "plain", images)
    path.write_bytes((tmp_path / "plain").read_bytes())  # raw bytes behind a .gz name
    with pytest.raises(DataError, match="cannot read") as err:
        read_idx(path, 2051)
    assert str(path) in str(err.value) and "delete it" in str(err.value)


def test_truncated_gzip(tmp_path: Path, images: np.ndarray) -> None:
    path = tmp_path / "imgs-idx3-ubyte.gz"
    write_idx(path, images)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match="cannot read") as err:
        read_idx(path, 2051)
    assert str(path) in str(err.value)


def test_corrupt_gzip_stream(tmp_path: Path) -> None:
    """A valid gzip header over a damaged deflate stream (zlib.error, not an OSError)."""
    path = tmp_path / "imgs-idx3-ubyte.gz"
    write_idx(path, np.arange(2000).reshape(20, 10, 10))
    data = bytearray(path.read_bytes())
    for i in range(10, len(data) - 8):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="cannot read") as err:
        read_idx(path, 2051)
    assert str(path) in str(err.value)


def test_bad_gzip_crc(tmp_path: Path, images: np.ndarray) -> None:
    path = tmp_path / "imgs-idx3-ubyte.gz"
    write_idx(path, images)
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # CRC32 of the trailer
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="cannot read") as err:
        read_idx(path, 2051)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope-idx1-ubyte"
    with pytest.raises(DataError, match="cannot read") as err:
        read_idx(path, 2049)
    assert str(path) in str(err.value)
