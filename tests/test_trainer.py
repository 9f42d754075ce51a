"""dlexp.trainer: the configured Trainer, its checkpoint writer, the CUDA check it chooses."""

from __future__ import annotations

import os

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import OmegaConf

from dlexp import trainer as trainer_module
from dlexp.checkpoint import ReentrantCheckpointIO
from dlexp.errors import ConfigError
from dlexp.requeue import RequeueAtBatchEnd
from dlexp.trainer import NVML_CHECK, build_trainer

CPU = OmegaConf.create({"_target_": "lightning.pytorch.Trainer", "accelerator": "cpu",
                        "enable_progress_bar": False, "enable_model_summary": False})


def test_trainers_write_checkpoints_with_the_reentrant_writer() -> None:
    trainer = build_trainer(CPU, [], [])
    assert isinstance(trainer.strategy.checkpoint_io, ReentrantCheckpointIO)


def test_under_slurm_the_requeue_waits_for_the_end_of_the_step(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "train", "SLURM_JOB_ID": "3",
                        "SLURM_NODELIST": "node1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
                        "SLURM_NODEID": "0"}.items():
        monkeypatch.setenv(name, value)
    trainer = build_trainer(CPU, [], [])
    assert isinstance(trainer._accelerator_connector.cluster_environment, SLURMEnvironment)
    assert not trainer._accelerator_connector.cluster_environment.auto_requeue
    assert any(isinstance(c, RequeueAtBatchEnd) for c in trainer.callbacks)
    monkeypatch.delenv("SLURM_NTASKS")
    assert not any(isinstance(c, RequeueAtBatchEnd) for c in build_trainer(CPU, [], []).callbacks)


def test_checkpointing_follows_the_callbacks(tmp_path) -> None:
    assert build_trainer(CPU, [], []).checkpoint_callbacks == []  # callbacks=none: none at all
    kept = build_trainer(CPU, [ModelCheckpoint(dirpath=tmp_path)], [])
    assert [type(c) for c in kept.checkpoint_callbacks] == [ModelCheckpoint]


def test_without_validation_no_validation_loop_runs() -> None:
    trainer = build_trainer(CPU, [], [], validate=False)
    assert trainer.limit_val_batches == 0 and trainer.num_sanity_val_steps == 0
    assert build_trainer(CPU, [], []).limit_val_batches == 1.0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without GPU")
def test_a_gpu_trainer_without_a_gpu_says_what_to_use() -> None:
    with pytest.raises(ConfigError, match="no GPU found on this machine: use trainer=cpu"):
        build_trainer(OmegaConf.merge(CPU, {"accelerator": "gpu"}), [], [])


@pytest.mark.parametrize(("driver", "expected"), [(False, "0"), (True, "1")])
def test_runtime_cuda_check_only_without_an_nvidia_driver(driver: bool, expected: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NVML_CHECK, "1")  # as `import lightning` leaves it
    monkeypatch.setattr(trainer_module, "nvidia_driver_loadable", lambda: driver)
    build_trainer(CPU, [], [])
    assert os.environ[NVML_CHECK] == expected

