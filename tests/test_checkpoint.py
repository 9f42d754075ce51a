"""dlexp.checkpoint: safe reading with a format check, fitting checks, and ReentrantCheckpointIO
(a write interrupted by another, Slurm's requeue save from its signal handler, leaves both
files whole)."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest
import torch

from dlexp import checkpoint
from dlexp.checkpoint import ReentrantCheckpointIO
from dlexp.errors import CheckpointError


class SavesWhilePickled:
    """Stands in for a signal handler that saves while the outer checkpoint is being written."""

    def __init__(self, io: ReentrantCheckpointIO, path: Path) -> None:
        self.io, self.path = io, path

    def __reduce__(self):
        self.io.save_checkpoint({"inner": torch.arange(3)}, self.path)
        return (int, (7,))


def test_a_save_inside_a_save_leaves_both_files_whole(tmp_path: Path) -> None:
    io = ReentrantCheckpointIO()
    outer, inner = tmp_path / "ckpts" / "last.ckpt", tmp_path / "hpc_ckpt_1.ckpt"
    io.save_checkpoint({"outer": torch.ones(2), "x": SavesWhilePickled(io, inner)}, outer)
    assert torch.equal(torch.load(inner, weights_only=True)["inner"], torch.arange(3))
    saved = torch.load(outer, weights_only=False)  # this test's own file; it pickles an int()
    assert torch.equal(saved["outer"], torch.ones(2)) and saved["x"] == 7
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["ckpts", "hpc_ckpt_1.ckpt",
                                                            "last.ckpt"]  # no temp files left


def test_a_save_inside_an_open_fsspec_transaction(tmp_path: Path) -> None:
    # Lightning's own writer enters this shared transaction and, nested, breaks it on exit
    fs = fsspec.filesystem("file")
    with fs.transaction:
        ReentrantCheckpointIO().save_checkpoint({"a": 1}, tmp_path / "a.ckpt")
    assert torch.load(tmp_path / "a.ckpt", weights_only=True) == {"a": 1}


def _write(path: Path, dlexp: object) -> Path:
    torch.save({"state_dict": {"net.w": torch.zeros(2, 3)}, "dlexp": dlexp}, path)
    return path


def test_load_checks_the_format(tmp_path: Path) -> None:
    good = {"format": checkpoint.FORMAT, "config": {}, "data": {}}
    assert checkpoint.load(_write(tmp_path / "a.ckpt", good))["dlexp"] == good
    with pytest.raises(CheckpointError, match=r"has dlexp checkpoint format 99; this dlexp reads "
                                              rf"format {checkpoint.FORMAT}"):
        checkpoint.load(_write(tmp_path / "b.ckpt", {**good, "format": 99}))
    with pytest.raises(CheckpointError, match="format None"):
        checkpoint.load(_write(tmp_path / "c.ckpt", {"config": {}}))


def test_check_fits_names_the_mismatch(tmp_path: Path) -> None:
    module = torch.nn.Module()
    module.w = torch.nn.Parameter(torch.zeros(2, 3))
    checkpoint.check_fits(module, {"w": (2, 3)}, "x.ckpt")
    with pytest.raises(CheckpointError, match=r"x.ckpt does not fit this model: 1 shape "
                                              r"mismatches, 0 missing tensors \(e.g. w\)"):
        checkpoint.check_fits(module, {"w": (3, 3)}, "x.ckpt")
    with pytest.raises(CheckpointError, match="0 shape mismatches, 1 missing tensors"):
        checkpoint.check_fits(module, {}, "x.ckpt")
