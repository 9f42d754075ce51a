"""ReentrantCheckpointIO: a checkpoint write interrupted by another (Slurm's requeue save from
its signal handler) leaves both files whole."""

from __future__ import annotations

from pathlib import Path

import fsspec
import torch
from omegaconf import OmegaConf

from dlexp import wiring
from dlexp.checkpoint_io import ReentrantCheckpointIO


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


def test_trainers_write_checkpoints_with_it() -> None:
    trainer = wiring.build_trainer(OmegaConf.create({"_target_": "lightning.pytorch.Trainer",
                                                    "accelerator": "cpu", "logger": False}))
    assert isinstance(trainer.strategy.checkpoint_io, ReentrantCheckpointIO)
