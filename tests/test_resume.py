"""Exact resume: a training process killed with SIGKILL in the middle of an epoch, resumed from
its last.ckpt, ends with the same weights, bit for bit, as the run that was never interrupted:
dropout masks, augmentations, data order (balanced draws too), the unlabeled stream and the EMA
all continue."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FAST, REPO, TINY_DATA, compose_train

from dlexp.train import train

pytestmark = pytest.mark.integration

EPOCHS = 4
SETUPS = {
    "mlp_dropout": ["model=mlp", "model.hidden=[32]", "model.dropout=0.2"],
    "balanced": ["model=mlp", "model.hidden=[32]", "data.imbalance=0.2", "data.sampler=balanced"],
    "cnn_augment": ["model=cnn", "model.blocks=[{filters: 4}]", "model.dense=[16]",
                    "model.dropout=0.2", "data.augment=true"],
    "lstm_imdb": ["data=imdb", "model=lstm", "model.embedding_dim=8", "model.hidden_size=8",
                  "data.val_size=40", "data.batch_size=16", "data.eval_batch_size=64",
                  "data.tokenizer.vocab_size=100", "data.tokenizer.min_frequency=1"],
    "fixmatch": ["method=fixmatch", "data.num_labeled=50", "method.unlabeled_ratio=2",
                 "model.blocks=[{filters: 4}]", "model.dense=[16]",
                 "method.task.threshold=0.5"],
    "pseudo_label": ["method=pseudo_label", "data.num_labeled=50", "model=mlp",
                     "model.hidden=[32]", "method.callbacks.pseudo_label.warmup_epochs=1",
                     "method.callbacks.pseudo_label.epochs_per_round=1",
                     "method.callbacks.pseudo_label.threshold=0.3"],
}


def _overrides(setup: str) -> list[str]:
    data = [] if setup == "lstm_imdb" else TINY_DATA
    return [*FAST, *data, *SETUPS[setup], "trainer.deterministic=true", "seed=1",
            f"trainer.max_epochs={EPOCHS}", "callbacks=no_early_stopping", "logger=csv"]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def signalled_run(run_dir: Path, *overrides: str, epoch: int = 2, batch: int = 1,
                  **signal_at: str) -> subprocess.CompletedProcess:
    """``python train.py OVERRIDES`` that sends itself a signal (``self_signal.SignalAt``,
    SIGKILL by default) at ``batch`` of ``epoch`` (0-based)."""
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'tests'}{os.pathsep}"
           f"{os.environ.get('PYTHONPATH', '')}", "PYTHONWARNINGS": "ignore"}
    args = [*overrides, f"hydra.run.dir={run_dir}",
            "+callbacks.signal._target_=self_signal.SignalAt",
            f"+callbacks.signal.epoch={epoch}", f"+callbacks.signal.batch={batch}",
            *(f"+callbacks.signal.{k}={v}" for k, v in signal_at.items())]
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args], env=env,
                          capture_output=True, text=True, timeout=600)


def _killed_run(run_dir: Path, data: Path, setup: str, **signal_at: str
                ) -> subprocess.CompletedProcess:
    """Killed with SIGKILL in the middle of the third epoch."""
    return signalled_run(run_dir, *_overrides(setup), f"paths.data_dir={data}", **signal_at)


@pytest.mark.parametrize("setup", list(SETUPS))
def test_sigkill_then_resume_ends_bit_identical(setup: str, tmp_path: Path, tiny_mnist: Path,
                                                tiny_imdb: Path) -> None:
    data = tiny_imdb if setup == "lstm_imdb" else tiny_mnist
    straight = train(compose_train(_overrides(setup), tmp_path / "straight", data))
    assert straight["status"] == "ok", straight.get("error")

    killed = _killed_run(tmp_path / "killed", data, setup)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    record = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert record["status"] == "running" and record["pid"] > 0  # a kill leaves "running"
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 1  # the end of the second epoch

    resumed = train(compose_train([*_overrides(setup), f"ckpt_path={last}"],
                                  tmp_path / "resumed", data))
    assert resumed["status"] == "ok", resumed.get("error")
    assert resumed["global_step"] == straight["global_step"]
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different
    assert Path(resumed["best_ckpt"]).name == Path(straight["best_ckpt"]).name
    assert resumed["test/acc"] == straight["test/acc"]
    assert last.is_file()  # the killed run's checkpoints stay where they were
    # nothing written before the kill is lost: every epoch has its row of the curves
    with open(tmp_path / "resumed" / "figures" / "curves.csv") as f:
        resumed_rows = list(csv.DictReader(f))
    with open(tmp_path / "straight" / "figures" / "curves.csv") as f:
        straight_rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in resumed_rows] == [str(e) for e in range(1, EPOCHS + 1)]
    assert resumed_rows == straight_rows


@pytest.mark.parametrize("setup", ["mlp_dropout", "lstm_imdb", "balanced"])
def test_a_mid_epoch_checkpoint_resumes_where_the_epoch_stopped(
        setup: str, tmp_path: Path, tiny_mnist: Path, tiny_imdb: Path) -> None:
    """As after a Slurm requeue: the loaders' place in the epoch travels in the checkpoint."""
    data = tiny_imdb if setup == "lstm_imdb" else tiny_mnist
    straight = train(compose_train(_overrides(setup), tmp_path / "straight", data))
    mid = tmp_path / "mid.ckpt"
    killed = _killed_run(tmp_path / "killed", data, setup, save=str(mid))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    resumed = train(compose_train([*_overrides(setup), f"ckpt_path={mid}"],
                                  tmp_path / "resumed", data))
    assert resumed["status"] == "ok", resumed.get("error")
    assert resumed["global_step"] == straight["global_step"]
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
