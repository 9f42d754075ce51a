"""On the real MNIST files (skipped when DLEXP_DATA_DIR does not hold them)."""

from __future__ import annotations

from pathlib import Path

from conftest import FAST, compose_train

from dlexp.train import train


def test_cnn_one_epoch_on_5k_real_samples(tmp_path: Path, real_data_dir: Path) -> None:
    cfg = compose_train([*FAST, "model=cnn", "optimizer=adam", "data.num_labeled=5000",
                         "data.val_size=5000", "data.batch_size=32", "trainer.max_epochs=1",
                         "test=false", "logger=none"], tmp_path, real_data_dir)
    metrics = train(cfg)
    assert metrics["status"] == "ok", metrics.get("error")
    assert metrics["epoch"] == 1
    assert metrics["val/acc"] >= 0.95, metrics
