"""ClassificationTask: a tiny Lightning run on generated digits, and the task's hooks."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch import nn

from dlexp.data.mnist import MNISTDataModule
from dlexp.errors import CheckpointError
from dlexp.losses import SoftmaxMSE
from dlexp.models.mlp import MLP
from dlexp.regularization import WeightPenalty
from dlexp.schedulers import Horizon
from dlexp.task import MAX_MISCLASSIFIED, ClassificationTask, forward_net

EXTRAS = {"format": 1, "config": {"model": {"_target_": "dlexp.models.mlp.MLP"}},
          "data": {"name": "mnist", "num_classes": 10}}
EPOCHS = 3


def _trainer(root: Path, **kwargs: Any) -> L.Trainer:
    kwargs = {"max_epochs": EPOCHS, **kwargs}
    return L.Trainer(accelerator="cpu", devices=1, enable_progress_bar=False, logger=False,
                     enable_checkpointing=False, enable_model_summary=False,
                     default_root_dir=str(root), **kwargs)


def _dm(root: Path) -> MNISTDataModule:
    return MNISTDataModule(root=str(root), download=False, val_size=100, batch_size=32,
                           eval_batch_size=100)


class _Recorder:
    """A scheduler factory that remembers the horizon it was given."""

    def __init__(self) -> None:
        self.horizons: list[Horizon] = []

    def __call__(self, optimizer: torch.optim.Optimizer, horizon: Horizon) -> Any:
        self.horizons.append(horizon)
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.9)


@pytest.fixture(scope="module")
def trained(tiny_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One short fit of an MLP, evaluated before and after, shared by the tests below."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("run")
    dm = _dm(tiny_mnist)
    recorder = _Recorder()
    task = ClassificationTask(
        MLP(hidden=(64,), dropout=0.1), functools.partial(torch.optim.Adam, lr=2e-3),
        num_classes=10, regularization=WeightPenalty(l2=1e-5), scheduler=recorder,
        checkpoint_extras=EXTRAS)
    trainer = _trainer(root)
    before = trainer.validate(task, datamodule=dm, verbose=False)[0]
    trainer.fit(task, datamodule=dm)
    fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    after = trainer.validate(task, datamodule=dm, verbose=False)[0]
    test = trainer.test(task, datamodule=dm, verbose=False)[0]
    ckpt_path = root / "last.ckpt"
    trainer.save_checkpoint(ckpt_path)
    return {"task": task, "dm": dm, "before": before, "after": after, "test": test,
            "fit": fit_metrics, "horizons": recorder.horizons, "ckpt": ckpt_path,
            "lr": task.optimizers().param_groups[0]["lr"]}


def test_loss_drops_and_accuracy_is_far_above_chance(trained: dict) -> None:
    before, after = trained["before"], trained["after"]
    assert before["val/acc"] < 0.3
    assert after["val/loss"] < 0.5 * before["val/loss"]
    assert after["val/acc"] > 0.8
    assert trained["test"]["test/acc"] > 0.8
    assert 0.7 < after["val/f1"] <= 1 + 1e-5


def test_fit_logs_train_metrics_and_penalty(trained: dict) -> None:
    fit = trained["fit"]
    for key in ("train/loss_epoch", "train/acc", "train/f1", "train/penalty", "val/loss",
                "val/acc"):
        assert key in fit, key
    assert fit["train/penalty"] > 0
    assert fit["train/acc"] > 0.5


def test_scheduler_gets_the_horizon(trained: dict) -> None:
    # 500 training samples in batches of 32: 16 steps per epoch
    assert trained["horizons"] == [Horizon(total_steps=16 * EPOCHS, max_epochs=EPOCHS)]
    assert trained["lr"] == pytest.approx(2e-3 * 0.9**EPOCHS)  # stepped once per epoch


def test_test_stage_fills_the_confusion_matrix(trained: dict) -> None:
    task = trained["task"]
    cm = task.test_confmat.compute()
    assert cm.shape == (10, 10) and cm.sum().item() == 200
    assert cm.sum(1).tolist() == [20] * 10  # 20 test digits per class
    accuracy = cm.diag().sum().item() / 200
    assert accuracy == pytest.approx(trained["test"]["test/acc"], abs=1e-6)
    wrong = 200 - cm.diag().sum().item()
    assert len(task.misclassified) == min(wrong, MAX_MISCLASSIFIED)


def test_checkpoint_carries_the_extras(trained: dict) -> None:
    ckpt = torch.load(trained["ckpt"], map_location="cpu", weights_only=True)
    assert ckpt["dlexp"] == EXTRAS
    assert any(k.startswith("net.") for k in ckpt["state_dict"])
    assert not any("criterion.weight" in k for k in ckpt["state_dict"])


def test_on_save_checkpoint_hook() -> None:
    task = ClassificationTask(MLP(hidden=()), torch.optim.SGD, 10, checkpoint_extras=EXTRAS)
    checkpoint: dict = {}
    task.on_save_checkpoint(checkpoint)
    assert checkpoint.keys() == {"dlexp", "dlexp_rng"} and checkpoint["dlexp"] == EXTRAS
    [states] = checkpoint["dlexp_rng"]  # one process: one set of states
    assert torch.equal(states["torch"], torch.get_rng_state())
    empty = ClassificationTask(MLP(hidden=()), torch.optim.SGD, 10)
    empty.on_save_checkpoint(checkpoint)
    assert checkpoint["dlexp"] == {}


def test_untrained_model_keeps_misclassified_examples(tiny_mnist: Path, tmp_path: Path) -> None:
    torch.manual_seed(1)
    task = ClassificationTask(MLP(hidden=(8,)), torch.optim.SGD, num_classes=10,
                              loss=SoftmaxMSE())
    task.misclassified = [("stale", 0, 1)]  # reset at the start of each test epoch
    _trainer(tmp_path).test(task, datamodule=_dm(tiny_mnist), verbose=False)
    cm = task.test_confmat.compute()
    wrong = int(cm.sum() - cm.diag().sum())
    assert wrong > MAX_MISCLASSIFIED  # chance level: most of the 200 are wrong
    assert len(task.misclassified) == MAX_MISCLASSIFIED
    for x, pred, true in task.misclassified:
        assert isinstance(x, torch.Tensor) and x.shape == (1, 28, 28) and x.dtype == torch.float32
        assert pred != true and 0 <= pred < 10 and 0 <= true < 10
        assert cm[true, pred] > 0


def test_inactive_penalty_is_dropped() -> None:
    task = ClassificationTask(MLP(hidden=()), torch.optim.SGD, 10, regularization=WeightPenalty())
    assert task.penalty is None
    active = ClassificationTask(MLP(hidden=()), torch.optim.SGD, 10,
                                regularization=WeightPenalty(l1=0.1))
    assert active.penalty is not None


def test_configure_optimizers_without_scheduler() -> None:
    net = MLP(hidden=(4,))
    net.head.weight.requires_grad_(False)
    task = ClassificationTask(net, functools.partial(torch.optim.SGD, lr=0.5), 10)
    opt = task.configure_optimizers()
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["lr"] == 0.5
    params = opt.param_groups[0]["params"]
    assert len(params) == 3 and all(p is not net.head.weight for p in params)


def test_training_step_adds_the_penalty() -> None:
    torch.manual_seed(0)
    net = MLP(hidden=(4,))
    task = ClassificationTask(net, torch.optim.SGD, 10, regularization=WeightPenalty(l2=1.0))
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    loss = task.training_step((x, y), 0)
    expected = nn.functional.cross_entropy(net(x), y) + WeightPenalty(l2=1.0)(net)
    torch.testing.assert_close(loss, expected)


def test_predict_step_gives_probabilities() -> None:
    task = ClassificationTask(MLP(hidden=(4,)), torch.optim.SGD, 10)
    x = torch.randn(5, 1, 28, 28)
    for batch in ((x, torch.zeros(5, dtype=torch.long)), (x,)):  # labels are optional
        probs = task.predict_step(batch, 0)
        assert probs.shape == (5, 10) and (probs >= 0).all()
        torch.testing.assert_close(probs.sum(-1), torch.ones(5))


def test_forward_net_unpacks_token_batches() -> None:
    class TwoInputs(nn.Module):
        def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            return ids.float() * lengths.float().unsqueeze(1)

    ids, lengths = torch.ones(2, 3, dtype=torch.long), torch.tensor([2, 3])
    assert forward_net(TwoInputs(), (ids, lengths)).tolist() == [[2.0] * 3, [3.0] * 3]
    net = nn.Identity()
    x = torch.randn(2, 3)
    assert forward_net(net, x) is x


def test_load_from_checkpoint_points_to_dlexp_load(untrained_image_ckpt: str) -> None:
    """Lightning's loader would fail with a TypeError about ``net``, ``optimizer`` and
    ``num_classes``: it says what works instead, in one line."""
    with pytest.raises(CheckpointError) as info:
        ClassificationTask.load_from_checkpoint(untrained_image_ckpt)
    message = str(info.value)
    assert f"use `model = dlexp.load({untrained_image_ckpt!r})`" in message
    assert "\n" not in message
