"""FixMatchTask's options for 100-label MNIST: the EMA teacher, distribution alignment and
FlexMatch's class-wise thresholds (elastic strong views: tests/data/test_augment_views.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import FAST, TINY_DATA, compose_train
from torch import nn

from dlexp import config
from dlexp.errors import ConfigError
from dlexp.methods.ema import EMA
from dlexp.methods.fixmatch import FixMatchTask
from dlexp.train import train

NO_VIEWS = {"max_shift": 0.0, "num_ops": 0, "cutout_size": 0.0}


class Fixed(nn.Module):
    """Logits are the first three pixels times ``scale``; records the mode it ran in."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return x.flatten(1)[:, :3] * self.scale


def _task(**kwargs) -> FixMatchTask:
    return FixMatchTask(Fixed(), torch.optim.SGD, num_classes=3, augment=NO_VIEWS, **kwargs)


def _batch() -> dict:
    xu = torch.zeros(4, 1, 2, 2)
    xu[0, 0, 0, 0] = 10.0  # confident: class 0
    xu[1, 0, 0, 1] = 10.0  # confident: class 1
    xl = torch.zeros(2, 1, 2, 2)
    return {"labeled": (xl, torch.tensor([0, 1])), "unlabeled": (xu, torch.tensor([0, 1, 2, 2]))}


def _with_ema(task: FixMatchTask) -> EMA:
    """Attach an EMA callback whose average exists, as during fit (no real Trainer; past the
    first step and off the logging steps, so the step logs nothing)."""
    ema = EMA(decay=0.9)
    ema.setup(SimpleNamespace(), task, "fit")
    task._trainer = SimpleNamespace(callbacks=[ema], log_every_n_steps=10**6, global_step=1,
                                    fast_dev_run=False)
    return ema


# ---------------------------------------------------------------------------- teacher
def test_ema_teacher_labels_with_the_average_in_eval_mode() -> None:
    task = _task(teacher="ema")
    ema = _with_ema(task)
    teacher = ema.averaged().net
    teacher.train()
    # the student is confident on two samples; the average is not confident on any
    with torch.no_grad():
        teacher.scale.fill_(0.0)
    loss = task.training_step(_batch(), 0)
    torch.testing.assert_close(loss, torch.log(torch.tensor(3.0)))  # labeled loss only
    assert task.pseudo_sums[1] == 0
    assert teacher.modes == [False] and teacher.training  # ran in eval mode, then restored
    # the same batch labelled by the student accepts its two confident samples
    student = _task()
    student.training_step(_batch(), 0)
    assert student.pseudo_sums[1] == 2


def test_ema_teacher_follows_the_averaged_weights() -> None:
    task = _task(teacher="ema")
    ema = _with_ema(task)
    with torch.no_grad():
        task.net.scale.fill_(0.0)  # the student alone would accept nothing
    ema._average_model.update_parameters(task)  # first update: the average copies the model
    with torch.no_grad():
        task.net.scale.fill_(1.0)
    ema._average_model.update_parameters(task)  # 0.9 x 0 + 0.1 x 1
    probs = task._teacher_probs(_batch()["unlabeled"][0])
    expected = (torch.tensor([10.0, 0, 0]) * 0.1).softmax(-1)
    torch.testing.assert_close(probs[0], expected)


def test_ema_teacher_needs_the_callback() -> None:
    task = _task(teacher="ema")
    task._trainer = SimpleNamespace(callbacks=[])
    with pytest.raises(RuntimeError, match="EMA callback"):
        task._teacher_probs(torch.zeros(2, 1, 2, 2))


@pytest.mark.parametrize(("key", "value"), [("teacher", "mean"), ("threshold_mode", "adaptive"),
                                            ("da_momentum", 1.0), ("flex_momentum", -0.1)])
def test_bad_options_are_refused(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"method.task.{key}"):
        _task(**{key: value})


@pytest.mark.parametrize("override", ["method.task.teacher=mean", "method.task.threshold=1.5",
                                      "method.task.flex_momentum=1"])
def test_bad_options_are_refused_before_any_data(override: str, tmp_path: Path) -> None:
    key = override.split("=")[0]
    cfg = compose_train(["method=fixmatch", override], tmp_path)
    with pytest.raises(ConfigError, match=key):
        config.check(cfg)


def test_defaults_leave_fixmatch_unchanged() -> None:
    # no alignment, the fixed threshold, the student as teacher: the plain FixMatch step
    task = _task()
    task.training_step(_batch(), 0)
    assert task.pseudo_sums.tolist() == [4, 2, 2, 2]
    assert task.p_model is None and task.class_learned is None
    assert task.net.modes == [True, True]  # weak views and the training pass: train mode


# ---------------------------------------------------------------------------- alignment
def test_distribution_alignment_moves_predictions_toward_the_labeled_distribution() -> None:
    task = _task(distribution_alignment=True, da_momentum=0.0)  # running means = this batch
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1], [0.7, 0.1, 0.2],
                          [0.45, 0.44, 0.11]])
    yl = torch.tensor([0, 1, 2])  # uniform labels
    aligned = task._align(probs, yl)
    torch.testing.assert_close(aligned.sum(1), torch.ones(4))
    target = torch.full((3,), 1 / 3)
    assert (aligned.mean(0) - target).abs().sum() < (probs.mean(0) - target).abs().sum()
    assert aligned[:, 0].max() < 0.7  # the over-predicted class loses confidence ...
    assert aligned[3].argmax() == 1  # ... and a close call flips to the rarer class
    expected = probs * target / probs.mean(0)
    torch.testing.assert_close(aligned, expected / expected.sum(1, keepdim=True))


def test_distribution_alignment_keeps_running_means_across_steps() -> None:
    task = _task(distribution_alignment=True, da_momentum=0.5)
    first = torch.tensor([[1.0, 0.0, 0.0]]).repeat(4, 1)
    task._align(first, torch.tensor([0, 1, 2]))
    task._align(torch.tensor([[0.0, 1.0, 0.0]]).repeat(4, 1), torch.tensor([0, 1, 2]))
    torch.testing.assert_close(task.p_model, torch.tensor([0.5, 0.5, 0.0]))
    torch.testing.assert_close(task.p_target, torch.full((3,), 1 / 3))


def test_the_running_statistics_travel_in_checkpoints(tmp_path: Path) -> None:
    """Resumed from a checkpoint, alignment and FlexMatch go on from the same running means."""
    task = _task(distribution_alignment=True, threshold_mode="flexmatch")
    probs = torch.tensor([[0.97, 0.02, 0.01]]).repeat(4, 1)
    task._align(probs, torch.tensor([0, 1, 2]))
    task._thresholds(*probs.max(-1))
    checkpoint: dict = {}
    task.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "c.ckpt")
    resumed = _task(distribution_alignment=True, threshold_mode="flexmatch")
    resumed.on_load_checkpoint(torch.load(tmp_path / "c.ckpt", weights_only=True))
    for key in FixMatchTask.RUNNING:
        torch.testing.assert_close(getattr(resumed, key), getattr(task, key))


def test_distribution_alignment_changes_what_training_accepts() -> None:
    # the teacher's confident predictions are all class 0: alignment divides class 0 down,
    # so fewer samples clear the threshold
    xu = torch.zeros(4, 1, 2, 2)
    xu[:, 0, 0, 0] = 4.0
    batch = {"labeled": (torch.zeros(3, 1, 2, 2), torch.tensor([0, 1, 2])),
             "unlabeled": (xu, torch.tensor([0, 0, 0, 0]))}
    plain, aligned = _task(threshold=0.9), _task(threshold=0.9, distribution_alignment=True)
    plain.training_step(batch, 0)
    aligned.training_step(batch, 0)
    assert plain.pseudo_sums[1] == 4 and aligned.pseudo_sums[1] == 0


# ---------------------------------------------------------------------------- flexmatch
def test_flexmatch_thresholds_scale_with_each_class_learning_effect() -> None:
    task = _task(threshold_mode="flexmatch", threshold=0.95, flex_momentum=0.0)
    confidence = torch.tensor([0.99] * 6 + [0.99] * 2 + [0.5] * 2)
    pseudo = torch.tensor([0] * 6 + [1] * 2 + [2] * 2)
    thresholds = task._thresholds(confidence, pseudo)
    # shares: class 0 0.6, class 1 0.2, class 2 0.0, unused 0.2 -> beta 1, 1/3, 0
    # M(beta) = beta / (2 - beta): 1, 0.2, 0
    torch.testing.assert_close(thresholds, torch.tensor([0.95] * 6 + [0.19] * 2 + [0.0] * 2))


def test_flexmatch_warmup_keeps_thresholds_low_while_most_of_the_pool_is_unused() -> None:
    task = _task(threshold_mode="flexmatch", threshold=0.95, flex_momentum=0.99)
    confidence, pseudo = torch.full((10,), 0.99), torch.tensor([0] * 5 + [1] * 5)
    first = task._thresholds(confidence, pseudo)
    assert first.max() < 0.01  # the running shares start with the whole pool unused
    for _ in range(1000):
        last = task._thresholds(confidence, pseudo)
    torch.testing.assert_close(last, torch.full((10,), 0.95), atol=1e-3, rtol=0)
    no_warmup = _task(threshold_mode="flexmatch", flex_momentum=0.99, flex_warmup=False)
    torch.testing.assert_close(no_warmup._thresholds(confidence, pseudo),
                               torch.full((10,), 0.95))


def test_fixed_mode_is_the_plain_threshold() -> None:
    task = _task(threshold=0.8)
    out = task._thresholds(torch.tensor([0.1, 0.9]), torch.tensor([0, 1]))
    torch.testing.assert_close(out, torch.tensor([0.8, 0.8]))
    assert task.class_learned is None


# ---------------------------------------------------------------------------- end to end
def test_all_options_run_end_to_end(tmp_path: Path, tiny_mnist: Path) -> None:
    cfg = compose_train([*FAST, *TINY_DATA, "method=fixmatch", "data.num_labeled=50",
                         "method.unlabeled_ratio=2", "trainer.max_epochs=1", "logger=csv",
                         "method.task.teacher=ema", "method.task.distribution_alignment=true",
                         "method.task.threshold_mode=flexmatch",
                         "method.task.augment.elastic_alpha=34",
                         "model.blocks=[{filters: 8}]", "model.dense=[32]"], tmp_path, tiny_mnist)
    metrics = train(cfg)
    assert metrics["status"] == "ok", metrics.get("error")
    assert metrics["global_step"] == -(-450 // 64)
