"""``logger=mlflow``, ``logger=wandb`` and ``logger=many`` on tiny runs, offline: MLflow's
default SQLite store under ``paths.log_dir`` (params, metrics per step and epoch, figures and
the kept checkpoint), a sweep's jobs in one experiment, W&B's offline run with its config, read
back from the run's records."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAST, REPO, TINY_DATA, compose_train

from dlexp.errors import ConfigError
from dlexp.loggers import build_loggers, run_name
from dlexp.train import train

pytestmark = pytest.mark.integration

MLP = ["model=mlp", "model.hidden=[16]", "model.dropout=0.0", "threads=1"]
STAMP = "2026-12-04_01-51-53_123456"


def test_run_name_is_the_run_directory_or_the_sweep_and_job(tmp_path: Path) -> None:
    assert run_name(tmp_path / "train" / "runs" / STAMP) == STAMP
    assert run_name(tmp_path / "multiruns" / STAMP / "3") == f"{STAMP}/3"


def test_mlflow_never_falls_back_to_a_mlruns_folder(tmp_path: Path) -> None:
    cfg = compose_train(["logger=mlflow", "logger.mlflow.tracking_uri=null"], tmp_path)
    with pytest.raises(ConfigError, match=r"^logger.mlflow.tracking_uri is empty: give "
                                          r"sqlite:///FILE.db or a server's http://HOST:PORT$"):
        build_loggers(cfg.logger, tmp_path, {})


def run(log_dir: Path, data: Path, *overrides: str) -> tuple[dict, Path]:
    """One run in ``log_dir/train/runs/<STAMP>``, as ``python train.py`` lays it out."""
    run_dir = log_dir / "train" / "runs" / STAMP
    run_dir.mkdir(parents=True)
    cfg = compose_train([*FAST, *TINY_DATA, *MLP, *overrides, f"paths.log_dir={log_dir}"],
                        run_dir, data)
    metrics = train(cfg)
    assert metrics["status"] == "ok", metrics.get("error")
    return metrics, run_dir


def only_run(uri: str, experiment: str = "train"):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, [e.name for e in client.search_experiments()]
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 1, runs
    return client, runs[0]


def test_mlflow_logs_into_sqlite_under_the_log_dir(tmp_path: Path, tiny_mnist: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # where Lightning's ./mlruns fallback would land
    log_dir = tmp_path / "outputs"
    metrics, run_dir = run(log_dir, tiny_mnist, "logger=mlflow", "trainer.max_epochs=2",
                           "trainer.log_every_n_steps=5")
    client, found = only_run(f"sqlite:///{log_dir}/mlflow.db")
    run_id = found.info.run_id
    assert found.info.run_name == STAMP and found.info.status == "FINISHED"
    assert found.data.tags["run_dir"] == str(run_dir.resolve())
    assert found.data.tags["best_ckpt"] == str(Path(metrics["best_ckpt"]).resolve())
    params = found.data.params
    assert params["choice/model"] == "mlp" and params["model/hidden"] == "[16]"
    assert float(params["optimizer/lr"]) > 0 and params["seed"] == "42"
    steps = [m.step for m in client.get_metric_history(run_id, "val/acc")]
    assert len(steps) == 2 and steps[0] < steps[1]  # one per epoch
    assert len(client.get_metric_history(run_id, "train/loss_step")) >= 4  # every 5 steps
    assert found.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"])
    figures = {Path(a.path).name for a in client.list_artifacts(run_id, "figures")}
    assert {"confusion_matrix.png", "first_layer.png", "curves.png"} <= figures
    assert (log_dir / "mlartifacts" / "train" / run_id / "artifacts" / "figures").is_dir()
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlartifacts").exists()


def test_many_is_tensorboard_csv_and_mlflow(tmp_path: Path, tiny_mnist: Path) -> None:
    log_dir = tmp_path / "outputs"
    metrics, run_dir = run(log_dir, tiny_mnist, "logger=many", "trainer.max_epochs=1",
                           "test=false", "logger.mlflow.log_model=true")
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert (run_dir / "csv" / "metrics.csv").is_file()
    client, found = only_run(f"sqlite:///{log_dir}/mlflow.db")
    assert "val/acc" in found.data.metrics
    # log_model: the kept checkpoint as an artifact (and Lightning's last.ckpt)
    kept = {Path(a.path).name for a in client.list_artifacts(found.info.run_id, "checkpoints")}
    assert kept == {Path(metrics["best_ckpt"]).name}
    assert {Path(a.path).name for a in client.list_artifacts(found.info.run_id, "last")} \
        >= {"last.ckpt"}


def test_a_failed_run_is_failed_in_mlflow(tmp_path: Path, offline: list[str]) -> None:
    log_dir = tmp_path / "outputs"
    run_dir = log_dir / "train" / "runs" / STAMP
    cfg = compose_train([*FAST, *TINY_DATA, *MLP, "logger=mlflow", f"paths.log_dir={log_dir}"],
                        run_dir, tmp_path / "no data here")
    assert train(cfg)["status"] == "failed"  # the MNIST files are missing, none downloaded
    _, found = only_run(f"sqlite:///{log_dir}/mlflow.db")
    assert found.info.status == "FAILED" and found.data.params["choice/model"] == "mlp"


def test_fast_dev_run_logs_no_mlflow_run(tmp_path: Path, tiny_mnist: Path) -> None:
    from mlflow.tracking import MlflowClient

    log_dir = tmp_path / "outputs"
    run(log_dir, tiny_mnist, "logger=mlflow", "debug=fdr")
    assert MlflowClient(f"sqlite:///{log_dir}/mlflow.db").get_experiment_by_name("train") is None


def test_sweep_jobs_land_in_one_experiment(tmp_path: Path, tiny_mnist: Path) -> None:
    cmd = [sys.executable, str(REPO / "train.py"), "-m", f"paths.log_dir={tmp_path}",
           f"paths.data_dir={tiny_mnist}", *FAST, *TINY_DATA, *MLP, "logger=mlflow",
           "trainer.max_epochs=1", "test=false", "optimizer=sgd,adam"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr[-3000:]
    (sweep,) = (tmp_path / "multiruns").iterdir()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (experiment,) = [e for e in client.search_experiments() if e.name != "Default"]
    assert experiment.name == "train"
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"{sweep.name}/0", f"{sweep.name}/1"]
    assert sorted(r.data.params["choice/optimizer"] for r in runs) == ["adam", "sgd"]


def wandb_records(path: Path) -> list:
    """The records of a ``.wandb`` file (what ``wandb sync`` uploads): LevelDB's log format, a
    7-byte file header, 32 KiB blocks of chunks (crc32, length, type: 1 full, 2 first, 3
    middle, 4 last), each record a protobuf ``Record``."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert struct.unpack("<4sHB", data[:7])[:2] == (b":W&B", 0xBEE1)
    pos, chunks, found = 7, [], []
    while pos + 7 <= len(data):
        left = block - pos % block
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if left < 7 or (length, kind) == (0, 0):  # the block's padding
            pos += left
            continue
        chunks.append(data[pos + 7:pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):
            found.append(wandb_internal_pb2.Record.FromString(b"".join(chunks)))
            chunks = []
    return found


def test_wandb_offline_writes_the_run_with_its_config(tmp_path: Path, tiny_mnist: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb_home"))
    monkeypatch.setenv("WANDB_MODE", "offline")  # restored after: WandbLogger sets it too
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    _, run_dir = run(tmp_path / "outputs", tiny_mnist, "logger=wandb", "trainer.max_epochs=1")
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    assert (offline / "files" / "output.log").is_file()
    (records,) = offline.glob("run-*.wandb")
    # the run as it started: an offline run keeps the config given to wandb.init
    # wandb's service process may still be flushing the file when the run returns
    deadline = time.monotonic() + 30
    while not (runs := [r.run for r in wandb_records(records)
                        if r.WhichOneof("record_type") == "run"]) and time.monotonic() < deadline:
        time.sleep(0.5)
    (started,) = runs
    assert started.display_name == STAMP and started.project == "train"
    config = {item.key: json.loads(item.value_json) for item in started.config.update}
    assert config["choice/model"] == "mlp" and config["model/hidden"] == "[16]"
    assert config["trainer/max_epochs"] == 1
    history = [r for r in wandb_records(records) if r.WhichOneof("record_type") == "history"]
    logged = {item.key or "/".join(item.nested_key) for r in history for item in r.history.item}
    assert {"val/acc", "train/loss_epoch", "test/acc", "hp/test_acc"} <= logged
