"""Honest exit codes: a run stopped by SIGTERM (a cluster's preemption) or Ctrl+C records
``interrupted``, keeps last.ckpt, prints one ``error:`` line naming the checkpoint to resume
from, and exits 128 + the signal; a diverging run ends as ``diverged``."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from conftest import FAST, TINY_DATA, compose_train
from test_resume import signalled_run

from dlexp import cluster
from dlexp.train import train

MLP = ["model=mlp", "model.hidden=[16]", "trainer.max_epochs=3", "callbacks=no_early_stopping"]


@pytest.mark.integration
@pytest.mark.parametrize(("sig", "code", "by"), [("SIGTERM", 143, "SIGTERM"),
                                                 ("SIGINT", 130, "Ctrl+C")])
def test_a_stopped_run_exits_non_zero_and_says_how_to_resume(
        sig: str, code: int, by: str, tmp_path: Path, tiny_mnist: Path) -> None:
    run_dir = tmp_path / "run"
    done = signalled_run(run_dir, *FAST, *TINY_DATA, *MLP, f"paths.data_dir={tiny_mnist}",
                         epoch=1, batch=2, signal=sig)
    assert done.returncode == code, done.stderr[-2000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: interrupted by {by} before the run finished; resume with the "
                      f"same overrides plus ckpt_path={last}"]
    assert "Traceback" not in done.stderr
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "interrupted" and record["error"] == errors[0][7:]
    assert torch.load(last, weights_only=True)["epoch"] == 0  # the first epoch is kept


@pytest.mark.integration
def test_a_stopped_sweep_exits_non_zero_after_its_first_job(tmp_path: Path,
                                                            tiny_mnist: Path) -> None:
    done = signalled_run(tmp_path / "unused", "-m", *FAST, *TINY_DATA, *MLP,
                         f"paths.data_dir={tiny_mnist}", f"paths.log_dir={tmp_path}",
                         "seed=1,2", epoch=1, batch=2, signal="SIGTERM")
    assert done.returncode == 143, done.stderr[-2000:]
    records = sorted((tmp_path / "multiruns").rglob("metrics.json"))
    assert [json.loads(r.read_text())["status"] for r in records] == ["interrupted"]


def test_sigterm_outside_fit_stops_the_run_too() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(cluster.Terminated) as stopped, cluster.sigterm_stops_the_run():
        assert signal.getsignal(signal.SIGTERM) is not before
        os.kill(os.getpid(), signal.SIGTERM)  # as during data loading, before fit
    assert stopped.value.code == 143
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back


@pytest.mark.integration
def test_a_diverging_run_ends_as_diverged_with_a_hint(tmp_path: Path, tiny_mnist: Path) -> None:
    metrics = train(compose_train([*FAST, *TINY_DATA, *MLP, "optimizer.lr=1e9"], tmp_path,
                                  tiny_mnist))
    assert metrics["status"] == "diverged"
    assert metrics["error"].startswith("training diverged at epoch 0")
    assert "lower optimizer.lr (now 1e+09) or set trainer.gradient_clip_val=1.0" in \
        metrics["error"]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["status"] == "diverged" and "test/acc" not in saved
