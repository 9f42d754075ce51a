"""dlexp.hparams: the settings as flat scalars, and each run as a session in TensorBoard's
HParams tab, written without an experiment summary so that TensorBoard works out which settings
differ between the runs and shows those first (the browser test looks at the result)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata

from dlexp.hparams import log_hparams

PARAMS = {"choice/model": "mlp", "optimizer/lr": 0.1, "model/batchnorm": False}
RESULTS = {"status": "ok", "test/acc": 0.9, "val/acc": 0.8, "epoch": 3, "val/f1": float("nan")}


def test_tensorboard_gets_a_session_and_the_final_metrics(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path, name="", version="", default_hp_metric=False)
    trainer = SimpleNamespace(loggers=[logger], global_step=7, is_global_zero=True)
    log_hparams(trainer, PARAMS, RESULTS)
    logger.finalize("success")
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)
    # a session start and end; no experiment summary, which would freeze the tab's columns
    assert set(content) == {metadata.SESSION_START_INFO_TAG, metadata.SESSION_END_INFO_TAG}
    start = metadata.parse_session_start_info_plugin_data(
        content[metadata.SESSION_START_INFO_TAG])
    assert start.hparams["choice/model"].string_value == "mlp"
    assert start.hparams["optimizer/lr"].number_value == pytest.approx(0.1)
    assert start.hparams["model/batchnorm"].bool_value is False
    assert set(events.Tags()["scalars"]) == {"hp/test_acc", "hp/val_acc"}  # finite floats only
    (acc,) = events.Scalars("hp/test_acc")
    assert acc.value == pytest.approx(0.9) and acc.step == 7
    assert yaml.safe_load((tmp_path / "hparams.yaml").read_text()) == PARAMS


def test_other_loggers_get_the_params_and_metrics(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path, name="", version="")
    log_hparams(SimpleNamespace(loggers=[logger], global_step=7, is_global_zero=True), PARAMS,
                RESULTS)
    logger.finalize("success")
    assert "hp/test_acc" in (tmp_path / "metrics.csv").read_text()
    assert yaml.safe_load((tmp_path / "hparams.yaml").read_text()) == PARAMS
