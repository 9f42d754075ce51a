"""dlexp.overhead: the per-step trims change what a step costs, never what a run does."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import pytest
from conftest import FAST, compose_train
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.profilers import SimpleProfiler
from omegaconf import OmegaConf

from dlexp import wiring
from dlexp.overhead import NVML_CHECK, CpuCudaCheck, NullProfiler

TRAINER = {"_target_": "lightning.pytorch.Trainer", "accelerator": "cpu", "max_steps": 3,
           "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
           "enable_model_summary": False}


class EnvProbe(L.Callback):
    """Records the CUDA-check mode torch sees during training steps."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    def on_train_batch_start(self, *args: object) -> None:
        self.seen.append(os.environ.get(NVML_CHECK))


def test_null_profiler_does_nothing_in_a_with_block() -> None:
    profiler = NullProfiler()
    with profiler.profile("a hook") as inner:
        assert inner is None
    assert profiler.profile("one") is profiler.profile("two")  # shared, nothing built per call


def test_trainer_gets_the_null_profiler_unless_one_is_configured(tmp_path: Path) -> None:
    plain = wiring.build_trainer(compose_train(FAST, tmp_path).trainer)
    assert isinstance(plain.profiler, NullProfiler)
    profiled = wiring.build_trainer(compose_train([*FAST, "debug=profiler"], tmp_path).trainer)
    assert isinstance(profiled.profiler, SimpleProfiler)
    assert any(isinstance(c, CpuCudaCheck) for c in plain.callbacks)


def test_cpu_fit_uses_the_runtime_check_and_restores_the_setting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NVML_CHECK, "1")  # as `import lightning` leaves it
    probe = EnvProbe()
    trainer = wiring.build_trainer(OmegaConf.create(TRAINER), [probe])
    trainer.fit(BoringModel())
    assert probe.seen == ["0", "0", "0"]
    assert os.environ[NVML_CHECK] == "1"


def test_the_setting_is_restored_when_training_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NVML_CHECK, raising=False)

    class Failing(BoringModel):
        def training_step(self, batch: object, batch_idx: int) -> None:
            raise RuntimeError("boom")

    trainer = wiring.build_trainer(OmegaConf.create(TRAINER))
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(Failing())
    assert NVML_CHECK not in os.environ
