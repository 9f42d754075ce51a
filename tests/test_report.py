"""``dlexp-report`` on a finished sweep with failing jobs: the table, the CSV, the plots."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from test_sweeps import MLP, multirun

from dlexp.report import find_jobs, read_curve, report


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, tiny_mnist: Path) -> Path:
    """2 optimizers x 3 learning rates, 2 epochs each; lr=-1 fails in both optimizers."""
    _, sweep_dir = multirun(tmp_path_factory.mktemp("sweep"), tiny_mnist, *MLP,
                            "optimizer=sgd,adam", "optimizer.lr=0.01,0.1,-1",
                            "trainer.max_epochs=2", "callbacks=no_early_stopping")
    return sweep_dir


def test_failing_job_is_recorded_and_the_sweep_goes_on(sweep: Path) -> None:
    jobs = find_jobs(sweep)
    assert len(jobs) == 6
    failed = [j for j in jobs if j.status == "failed"]
    assert sorted(j.overrides["optimizer"] for j in failed) == ["adam", "sgd"]
    assert all(j.overrides["optimizer.lr"] == "-1" for j in failed)
    assert all("Invalid learning rate" in j.metrics["error"] for j in failed)
    assert all(j.status == "ok" and j.metrics["epoch"] == 2 for j in jobs if j not in failed)


def test_tensorboard_hparams_of_every_run(sweep: Path) -> None:
    """`tensorboard --logdir <sweep>` compares the runs: each finished job wrote its hparams."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for job in find_jobs(sweep):
        if job.status == "ok":
            events = EventAccumulator(str(job.path / "tensorboard"))
            events.Reload()
            assert events.PluginTagToContent("hparams"), job.name


def test_report_table_and_plots(sweep: Path, tmp_path: Path) -> None:
    result = report(sweep, tmp_path, top=3)
    text = (tmp_path / "report.md").read_text()
    assert text == result["markdown"]
    table = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    header, rows = table[0], table[1:]
    assert header.startswith("| rank | job | status | val/acc | optimizer | optimizer.lr |")
    assert len(rows) == 6
    accs = [float(r.split(" | ")[3]) for r in rows[:4]]
    assert accs == sorted(accs, reverse=True)  # monitor.mode max: best first
    assert all("| failed |" in r and "Invalid learning rate" in r for r in rows[4:])
    with open(tmp_path / "report.csv") as f:
        assert len(list(csv.DictReader(f))) == 6
    for name in ("val_acc_vs_optimizer.png", "val_acc_vs_optimizer.lr.png", "val_curves.png"):
        assert (tmp_path / name).stat().st_size > 5000, name
    # the curve is the fit's validation, one point per epoch
    best = find_jobs(sweep)[int(rows[0].split(" | ")[1])]
    assert len(read_curve(best.path, "val/acc")) == 2


def test_curves_from_the_csv_logger(tmp_path: Path) -> None:
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "metrics.csv").write_text(
        "epoch,step,train/loss_epoch,val/acc\n0,9,,0.5\n0,9,1.2,\n1,19,,0.7\n1,19,0.8,\n"
        "1,20,,0.6\n")  # the last row: the best checkpoint re-validated after fit
    assert read_curve(tmp_path, "val/acc") == [(9, 0.5), (19, 0.7)]


def test_cli(sweep: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    ok = subprocess.run([sys.executable, str(REPO / "report.py"), str(sweep), "--out",
                         str(tmp_path / "out")], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "| 1 |" in ok.stdout and (tmp_path / "out" / "report.md").is_file()
    empty = subprocess.run([sys.executable, str(REPO / "report.py"), str(tmp_path / "out")],
                           capture_output=True, text=True, env=env)
    assert empty.returncode == 1
    assert empty.stderr.startswith("error: no jobs in") and "Traceback" not in empty.stderr


def test_markdown_rounds_swept_numbers_but_keeps_words() -> None:
    from dlexp.report import _fmt

    assert _fmt("0.0007523742884534858") == "0.0007524"  # an Optuna learning rate
    assert _fmt(0.912345678) == "0.9123"
    assert [_fmt(v) for v in ("adam", "1e-3", "[32,16]", None, 3)] == ["adam", "1e-3", "[32,16]",
                                                                        "", "3"]


def _job(sweep: Path, number: int, overrides: list[str], metrics: dict) -> None:
    """A finished job as Hydra and train.py leave it: its overrides and metrics.json."""
    import json

    hydra = sweep / str(number) / ".hydra"
    hydra.mkdir(parents=True)
    (hydra / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (sweep / str(number) / "metrics.json").write_text(json.dumps(metrics))


def test_folds_give_mean_and_std_per_setting(tmp_path: Path) -> None:
    """``-m model=mlp,cnn data.fold=0,1,2 seed=...``: one row per model over its 3 folds;
    a failed fold is left out of the mean and counted."""
    sweep = tmp_path / "cv"
    accs = {"mlp": [0.90, 0.92, 0.94], "cnn": [0.97, 0.98, None]}
    number = 0
    for model, values in accs.items():
        for fold, acc in enumerate(values):
            metrics = {"status": "ok", "val/acc": acc, "test/acc": acc - 0.01} if acc \
                else {"status": "failed", "error": "boom"}
            _job(sweep, number, [f"model={model}", "data.folds=3", f"data.fold={fold}",
                                 f"seed={fold}"], metrics)
            number += 1
    result = report(sweep, tmp_path / "out")
    header, rows = result["folds"]
    assert header == ["model", "folds", "val/acc", "test/acc"]
    assert rows == [{"model": "cnn", "folds": "2/3", "val/acc": "0.975 ± 0.0071",
                     "test/acc": "0.965 ± 0.0071"},
                    {"model": "mlp", "folds": 3, "val/acc": "0.92 ± 0.02",
                     "test/acc": "0.91 ± 0.02"}]
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Cross-validation: mean ± std over the folds of each setting" in text
    assert "| mlp | 3 | 0.92 ± 0.02 | 0.91 ± 0.02 |" in text
    with open(tmp_path / "out" / "folds.csv") as f:
        assert [r["model"] for r in csv.DictReader(f)] == ["cnn", "mlp"]


def test_a_sweep_without_folds_has_no_fold_table(tmp_path: Path) -> None:
    for number, lr in enumerate(("0.1", "0.01")):
        _job(tmp_path / "s", number, [f"optimizer.lr={lr}"], {"status": "ok", "val/acc": 0.5})
    result = report(tmp_path / "s", tmp_path / "out")
    assert result["folds"] is None and not (tmp_path / "out" / "folds.csv").exists()
    assert "Cross-validation" not in result["markdown"]
