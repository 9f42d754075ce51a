"""End-to-end training runs on generated data: learning, records, logs, resume, errors."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FAST, REPO, TINY_DATA, compose_train

from dlexp.train import train

MLP = ["model=mlp", "model.hidden=[64]", "model.dropout=0.0"]
METRIC_KEYS = {"status", "val/acc", "val/loss", "test/acc", "test/loss", "epoch", "wall_s",
               "train/samples_per_s", "best_ckpt"}


def run(tmp_path: Path, data: Path, *overrides: str) -> dict:
    cfg = compose_train([*FAST, *TINY_DATA, *overrides], tmp_path, data)
    return train(cfg)


def test_tiny_run_learns_and_writes_metrics(tmp_path: Path, tiny_mnist: Path) -> None:
    metrics = run(tmp_path, tiny_mnist, *MLP, "trainer.max_epochs=4", "logger=csv")
    assert metrics["status"] == "ok", metrics.get("error")
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved.keys() >= METRIC_KEYS
    assert saved["epoch"] == 4 and saved["train/samples_per_s"] > 0
    assert saved["val/acc"] > 0.8 and saved["test/acc"] > 0.8  # chance is 0.1
    assert Path(saved["best_ckpt"]).is_file()
    with open(tmp_path / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    losses = [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]
    assert len(losses) == 4 and losses[-1] < 0.5 * losses[0]
    assert (tmp_path / "figures" / "confusion_matrix.png").is_file()
    assert (tmp_path / "figures" / "first_layer.png").is_file()


def test_tensorboard_has_expected_tags(tmp_path: Path, tiny_mnist: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    metrics = run(tmp_path, tiny_mnist, *MLP, "trainer.max_epochs=2", "logger=tensorboard",
                  "trainer.log_every_n_steps=5")
    assert metrics["status"] == "ok", metrics.get("error")
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    scalars = set(tags["scalars"])
    expected = {"train/loss_step", "train/loss_epoch", "train/acc", "val/loss", "val/acc",
                "val/f1", "test/acc", "test/loss", "lr-Adam", "hp/test_acc", "hp/val_acc"}
    assert expected <= scalars, expected - scalars
    images = set(tags["images"])
    assert "test/confusion_matrix" in images
    assert ("test/misclassified" in images) == (metrics["test/acc"] < 1.0)
    # the hparams plugin holds the final metrics and the chosen options
    plugin = events.PluginTagToContent("hparams")
    assert plugin, "no hparams summary written"
    assert events.Scalars("hp/test_acc")[-1].value == pytest.approx(metrics["test/acc"])
    # one validation point per epoch: re-validating the kept checkpoint is not logged
    assert len(events.Scalars("val/acc")) == 2


def test_resume_continues_exactly(tmp_path: Path, tiny_mnist: Path) -> None:
    straight = run(tmp_path / "a", tiny_mnist, *MLP, "trainer.max_epochs=4")
    first = run(tmp_path / "b", tiny_mnist, *MLP, "trainer.max_epochs=2")
    last = tmp_path / "b" / "checkpoints" / "last.ckpt"
    resumed = run(tmp_path / "c", tiny_mnist, *MLP, "trainer.max_epochs=4",
                  f"ckpt_path={last}")
    assert resumed["status"] == "ok", resumed.get("error")
    assert first["epoch"] == 2 and resumed["epoch"] == straight["epoch"] == 4
    assert resumed["global_step"] == straight["global_step"] == 2 * first["global_step"]
    a = torch.load(tmp_path / "a/checkpoints/last.ckpt", weights_only=True)
    c = torch.load(tmp_path / "c/checkpoints/last.ckpt", weights_only=True)
    for key, value in a["state_dict"].items():  # same data order, same optimizer state
        torch.testing.assert_close(c["state_dict"][key], value, rtol=1e-5, atol=1e-6)


def test_resume_refuses_another_model(tmp_path: Path, tiny_mnist: Path) -> None:
    run(tmp_path / "mlp", tiny_mnist, *MLP, "trainer.max_epochs=1")
    ckpt = tmp_path / "mlp" / "checkpoints" / "last.ckpt"
    before = ckpt.read_bytes()
    metrics = run(tmp_path / "cnn", tiny_mnist, "model=cnn", f"ckpt_path={ckpt}")
    assert metrics["status"] == "failed"
    assert "holds a MLP" in metrics["error"] and "model=mlp" in metrics["error"]
    other = run(tmp_path / "wide", tiny_mnist, "model=mlp", "model.hidden=[32]",
                f"ckpt_path={ckpt}")
    assert other["status"] == "failed" and "does not fit this model" in other["error"]
    assert ckpt.read_bytes() == before  # the checkpoint is never touched


@pytest.mark.parametrize(("override", "message"), [
    ("optimizer.lr=-0.1", "Invalid learning rate: -0.1"),
    ("model.dropout=1.0", "dropout must be in [0, 1), got 1.0"),
    ("model.activation=swish", "unknown activation 'swish'; choose one of sigmoid"),
    ("data.val_size=1000", "data.val_size must be a count in [0, 600)"),
    ("data.classes=[3,11]", "data.classes must be distinct digits 0-9"),
    ("ckpt_path=/no/such.ckpt", "checkpoint not found: /no/such.ckpt"),
    ("loss.label_smoothing=1.5", "label_smoothing must be in [0, 1)"),
    ("threads=0", "threads must be a whole number >= 1 (or null), got 0"),
    ("data.val_size=0", "callbacks.early_stopping watches val/loss, but data.val_size=0 leaves "
                        "no validation set: add callbacks=no_early_stopping"),
    ("data.normalize=minmax", "data.normalize must be one of standard, unit, none"),
    ("data.batch_size=0", "data.batch_size must be a whole number >= 1, got 0"),
    ("data.eval_batch_size=-4", "data.eval_batch_size must be a whole number >= 1, got -4"),
    ("scheduler=step scheduler.builder.step_size=0",
     "scheduler.builder.step_size must be a whole number of epochs >= 1, got 0"),
    ("data.classes=[3]", "data.classes needs at least 2 digits to classify"),
    ("data.num_labeled=5", "data.num_labeled must be in [10, 500] (at least one label per class)"),
    ("monitor.metric=val/accuracy", "monitor.metric=val/accuracy is not a metric dlexp logs; "
                                    "choose one of val/acc, val/loss"),
    ("monitor.mode=maximum", "monitor.mode must be min or max, got maximum"),
    ("model.hidden=[-5]", "hidden sizes must be whole numbers >= 1, got [-5]"),
    ("optimizer=momentum optimizer.momentum=2", "optimizer.momentum must be in [0, 1), got 2"),
    ("optimizer.lr=0", "optimizer.lr must be > 0, got 0"),
    ("+modell=cnn", "unknown setting 'modell' (did you mean model?)"),
    ("+callbacks.oops=3", "callbacks.oops is not a callbacks entry (a node with a _target_)"),
])
def test_bad_values_fail_with_their_message(override: str, message: str, tmp_path: Path,
                                            tiny_mnist: Path) -> None:
    overrides = [*MLP, "trainer.max_epochs=1"]
    if override.startswith("data.val_size"):
        overrides = [o for o in overrides] + [override]
        cfg = compose_train([*FAST, *overrides], tmp_path, tiny_mnist)
        metrics = train(cfg)
    else:
        metrics = run(tmp_path, tiny_mnist, *overrides, *override.split())
    assert metrics["status"] == "failed"
    assert message in metrics["error"]
    assert "epoch" not in metrics  # failed before any training
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "failed"


def test_without_validation_all_data_trains_and_the_last_weights_are_tested(
        tmp_path: Path, tiny_mnist: Path) -> None:
    metrics = run(tmp_path, tiny_mnist, *MLP, "trainer.max_epochs=3", "data.val_size=0",
                  "callbacks=no_early_stopping")  # Keras' fit without validation_split
    assert metrics["status"] == "ok", metrics.get("error")
    assert metrics["val/acc"] is None and metrics["test/acc"] > 0.8
    assert metrics["global_step"] == 3 * math.ceil(600 / 32)  # every training image, each epoch
    assert Path(metrics["best_ckpt"]).name == "last.ckpt"
    cosine = run(tmp_path / "cosine", tiny_mnist, *MLP, "data.val_size=0",
                 "callbacks=no_early_stopping", "scheduler=cosine")  # needs no validation
    assert cosine["status"] == "ok", cosine.get("error")
    plateau = run(tmp_path / "plateau", tiny_mnist, *MLP, "data.val_size=0",
                  "callbacks=no_early_stopping", "scheduler=plateau")
    assert plateau["status"] == "failed"
    assert "the plateau scheduler watches val/loss, but data.val_size=0" in plateau["error"]


def test_ctrl_c_is_recorded_as_interrupted(tmp_path: Path, tiny_mnist: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from dlexp.task import ClassificationTask

    def press_ctrl_c(self, batch, batch_idx):
        raise KeyboardInterrupt

    monkeypatch.setattr(ClassificationTask, "training_step", press_ctrl_c)
    with pytest.raises(SystemExit):  # Lightning's graceful shutdown ends with exit(1)
        run(tmp_path, tiny_mnist, *MLP, "trainer.max_epochs=1")
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["status"] == "interrupted" and "Ctrl+C" in saved["error"]


def test_max_steps_may_end_an_epoch_early(tmp_path: Path, tiny_mnist: Path) -> None:
    """Early stopping judges after validations only: an epoch cut short has none."""
    metrics = run(tmp_path, tiny_mnist, *MLP, "+trainer.max_steps=3")
    assert metrics["status"] == "ok", metrics.get("error")
    assert metrics["global_step"] == 3


def test_callbacks_none_writes_no_checkpoint(tmp_path: Path, tiny_mnist: Path) -> None:
    quiet = [o for o in FAST if not o.startswith("~callbacks")]  # none has nothing to drop
    metrics = train(compose_train([*quiet, *TINY_DATA, *MLP, "trainer.max_epochs=1",
                                   "callbacks=none"], tmp_path, tiny_mnist))
    assert metrics["status"] == "ok", metrics.get("error")
    assert metrics["best_ckpt"] is None and metrics["test/acc"] > 0.3  # the final weights
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_trainer_without_a_gpu_says_what_to_use(tmp_path: Path, tiny_mnist: Path) -> None:
    on_gpu = [o for o in FAST if o != "trainer.accelerator=cpu"]
    metrics = train(compose_train([*on_gpu, *TINY_DATA, *MLP, "trainer=gpu"], tmp_path,
                                  tiny_mnist))
    assert metrics["status"] == "failed"
    assert metrics["error"].startswith("no GPU found on this machine: use trainer=cpu")


def test_missing_data_says_where_it_looked(tmp_path: Path) -> None:
    metrics = run(tmp_path, tmp_path / "empty", *MLP, "data.download=false")
    assert metrics["status"] == "failed"
    assert str((tmp_path / "empty" / "MNIST" / "raw").resolve()) in metrics["error"]
    assert "DLEXP_DATA_DIR" in metrics["error"]


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, str(REPO / "train.py"), f"paths.log_dir={tmp_path}",
                           *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize(("args", "message"), [
    (["optimizer=adamm"], "Available options in 'optimizer'"),
    (["model=mlp", "optimizer.lr=-1"], "error: optimizer/scheduler: Invalid learning rate"),
])
def test_cli_errors_are_short(tmp_path: Path, tiny_mnist: Path, args: list[str],
                              message: str) -> None:
    result = _cli(tmp_path, f"paths.data_dir={tiny_mnist}", *args)
    assert result.returncode == 1
    assert message in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_cli_run_writes_its_own_directory(tmp_path: Path, tiny_mnist: Path) -> None:
    result = _cli(tmp_path, f"paths.data_dir={tiny_mnist}", *MLP, "debug=fdr", *TINY_DATA)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = list((tmp_path / "train" / "runs").iterdir())
    assert len(runs) == 1
    assert (runs[0] / ".hydra" / "config.yaml").is_file()
    assert json.loads((runs[0] / "metrics.json").read_text())["status"] == "ok"
