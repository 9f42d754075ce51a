"""Reader for the IDX format of the MNIST files, strict about sizes and magic numbers."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from dlexp.errors import DataError

MAGIC = {2049: 1, 2051: 3}  # labels: 1 dimension, images: 3 dimensions (n, rows, cols)


def read_idx(path: Path, expect_magic: int) -> torch.Tensor:
    """Read an (optionally gzipped) IDX file of unsigned bytes into a uint8 tensor."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"cannot read {path}: {e}; delete it and provide the file again") from e
    if len(raw) < 8:
        raise DataError(f"{path} is truncated ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expect_magic:
        raise DataError(f"{path} has magic number {magic}, expected {expect_magic}: not an MNIST "
                        f"{'label' if expect_magic == 2049 else 'image'} file, or corrupt")
    ndim = MAGIC[magic]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DataError(f"{path} has {len(raw)} bytes but its header {dims} says {expected}: "
                        "the file is truncated or corrupt; delete it and provide it again")
    data = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)
    return torch.from_numpy(data.copy())


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as IDX (used by tests to make fixtures, and by users for new data)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    if array.ndim not in (1, 3):
        raise ValueError(f"IDX needs labels (n,) or images (n, rows, cols), got shape {array.shape}")
    magic = 2049 if array.ndim == 1 else 2051
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
