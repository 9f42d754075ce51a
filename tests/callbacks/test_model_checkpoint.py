"""ResumableCheckpoint: a run resumed into a new directory keeps comparing against the best so
far, and never deletes the earlier run's files."""

from __future__ import annotations

from pathlib import Path

import torch

from dlexp.callbacks.model_checkpoint import ResumableCheckpoint


def _saved(old: Path, best: Path) -> dict:
    return ResumableCheckpoint(dirpath=old, monitor="val/acc", mode="max").state_dict() | {
        "best_model_score": torch.tensor(0.9), "best_model_path": str(best),
        "best_k_models": {str(best): torch.tensor(0.9)}, "kth_best_model_path": str(best),
        "kth_value": torch.tensor(0.9), "last_model_path": str(old / "last.ckpt")}


def test_the_best_so_far_survives_a_new_directory(tmp_path: Path) -> None:
    old, new = tmp_path / "run1", tmp_path / "run2"
    best = old / "best.ckpt"
    best.parent.mkdir()
    best.write_bytes(b"x")
    callback = ResumableCheckpoint(dirpath=new, monitor="val/acc", mode="max")
    callback.load_state_dict(_saved(old, best))
    assert callback.best_model_path == str(best)
    assert torch.equal(callback.best_model_score, torch.tensor(0.9))
    assert list(callback.best_k_models) == [str(best)] and callback.last_model_path == ""
    assert callback.dirpath == str(new)


def test_a_vanished_best_file_is_no_candidate(tmp_path: Path) -> None:
    callback = ResumableCheckpoint(dirpath=tmp_path / "run2", monitor="val/acc", mode="max")
    callback.load_state_dict(_saved(tmp_path / "run1", tmp_path / "run1" / "gone.ckpt"))
    assert callback.best_k_models == {}
