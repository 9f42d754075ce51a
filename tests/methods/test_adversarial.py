"""method=adversarial: the shift's size and direction, the one-pass gradient against the plain
two-pass one, virtual adversarial training, refusals, and whole runs on the tiny IMDB fixture
(also fine-tuned from a language model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FAST, REPO, compose_train

from dlexp import config
from dlexp.errors import ConfigError
from dlexp.methods.adversarial import AdversarialTask, _unit
from dlexp.models.cnn import CNN
from dlexp.models.rnn import RNNClassifier
from dlexp.train import train

SMALL = ["data=imdb", "model=lstm", "model.embedding_dim=16", "model.hidden_size=16",
         "model.dropout=0.0", "model.embedding_dropout=0.0", "optimizer.lr=0.01",
         "data.val_size=40", "data.batch_size=16", "data.eval_batch_size=64",
         "data.tokenizer.vocab_size=200", "data.tokenizer.min_frequency=1", "logger=none"]


def _task(**kwargs) -> AdversarialTask:
    torch.manual_seed(0)
    net = RNNClassifier(50, embedding_dim=8, hidden_size=12)
    return AdversarialTask(net=net, optimizer=None, num_classes=2, **kwargs)


def _batch(n: int = 6, steps: int = 10) -> tuple:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 50, (n, steps), generator=g)
    lengths = torch.randint(3, steps + 1, (n,), generator=g)
    return (ids, lengths), torch.randint(0, 2, (n,), generator=g)


def test_unit_scales_each_sequence_to_norm_one() -> None:
    g = torch.randn(4, 7, 3) * torch.tensor([1e-30, 1.0, 5.0, 1e6]).view(4, 1, 1)
    assert torch.allclose(_unit(g).pow(2).sum(dim=(1, 2)), torch.ones(4), atol=1e-5)


def test_the_gradient_is_the_clean_plus_the_adversarial_loss_gradient() -> None:
    task, batch = _task(epsilon=2.0, weight=0.5), _batch()
    (x, y), net = batch, task.net
    task.training_step(batch, 0).backward()
    one_pass = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    # the plain way: a backward pass for the direction, then both losses' backward
    shift: list[torch.Tensor] = []
    handle = net.embedding.register_forward_hook(lambda m, a, out: shift.append(out))
    clean = task.criterion(net(*x), y)
    handle.remove()
    g = torch.autograd.grad(clean, shift[0], retain_graph=True)[0]
    r = 2.0 * net.embedding.weight.detach().pow(2).mean().sqrt() * _unit(g)
    handle = net.embedding.register_forward_hook(lambda m, a, out: out + r)
    adversarial = task.criterion(net(*x), y)
    handle.remove()
    (clean + 0.5 * adversarial).backward()
    for a, b in zip(one_pass, (p.grad for p in net.parameters()), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert adversarial > clean  # the shift goes where the loss rises


def test_the_step_logs_the_true_loss_and_leaves_no_hook() -> None:
    task, batch = _task(), _batch()
    loss = task.training_step(batch, 0)
    with torch.no_grad():
        clean = task.criterion(task(batch[0]), batch[1])
    assert loss.item() > clean.item()  # clean + weight x adversarial, not the carrier's value
    assert not task.net.embedding._forward_hooks


def test_virtual_adversarial_needs_no_label_and_trains_every_weight() -> None:
    task, (x, y) = _task(kind="virtual"), _batch()
    flipped = 1 - y
    torch.manual_seed(3)
    loss = task.training_step((x, y), 0)
    loss.backward()
    assert all(p.grad.abs().sum() > 0 for p in task.net.parameters())
    torch.manual_seed(3)  # the same probe: other labels change the clean term only
    other = task.training_step((x, flipped), 0)
    with torch.no_grad():
        clean, clean_flipped = task.criterion(task(x), y), task.criterion(task(x), flipped)
    assert (loss - clean).item() == pytest.approx((other - clean_flipped).item(), abs=1e-5)
    assert (loss - clean).item() > 0


def test_a_frozen_embedding_still_gets_its_shift() -> None:
    task, batch = _task(), _batch()
    task.net.embedding.weight.requires_grad_(False)
    task.training_step(batch, 0).backward()
    assert task.net.embedding.weight.grad is None
    assert task.net.head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kind": "fgsm"}, "kind must be one of adversarial, virtual"),
    ({"epsilon": 0.0}, "epsilon and xi must be > 0"),
    ({"weight": -1.0}, "weight >= 0")])
def test_options_out_of_range_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _task(**kwargs)


@pytest.mark.parametrize(("override", "message"), [
    ("method.task.kind=fgsm", "kind must be one of adversarial, virtual, got 'fgsm'"),
    ("method.task.xi=0", "epsilon and xi must be > 0")])
def test_options_out_of_range_are_refused_before_any_data(override: str, message: str,
                                                          tmp_path: Path) -> None:
    cfg = compose_train([*SMALL, "method=adversarial", override], tmp_path)
    with pytest.raises(ConfigError, match=message):
        config.check(cfg)


def test_a_network_without_embedding_is_refused() -> None:
    with pytest.raises(ValueError, match="has no `embedding`"):
        AdversarialTask(net=CNN(), optimizer=None, num_classes=10)


def test_an_image_model_is_refused_before_any_data(tmp_path: Path) -> None:
    cfg = compose_train(["method=adversarial"], tmp_path)
    with pytest.raises(ConfigError, match="method=adversarial perturbs word embeddings"):
        config.check(cfg)


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["adversarial", "virtual"])
def test_a_whole_run_learns_the_generated_sentiment(kind: str, tmp_path: Path,
                                                    tiny_imdb: Path) -> None:
    metrics = train(compose_train([*FAST, *SMALL, "method=adversarial",
                                   f"method.task.kind={kind}", "trainer.max_epochs=6"],
                                  tmp_path, tiny_imdb))
    assert metrics["status"] == "ok", metrics.get("error")
    assert metrics["test/acc"] >= 0.8, metrics


def test_an_option_another_method_lacks_is_refused_before_any_data(tmp_path: Path) -> None:
    # a preset's method option left behind when the command line picks another method
    cfg = compose_train(["experiment=imdb_lstm_best", "transfer.source=x.ckpt",
                         "method=supervised", "+method.task.kind=virtual"], tmp_path)
    with pytest.raises(ConfigError, match=r"method=supervised has no option kind "
                                          r"\(method.task.kind\); its options: none"):
        config.check(cfg)
    cfg = compose_train([*SMALL, "method=adversarial", "+method.task.epsilom=3"], tmp_path)
    with pytest.raises(ConfigError, match="no option epsilom .* epsilon, kind, weight, xi"):
        config.check(cfg)


@pytest.mark.integration
def test_two_ddp_processes_train_with_it(tmp_path: Path, tiny_imdb: Path) -> None:
    # the clean loss's gradient travels in the loss DDP reduces, not in .grad
    args = [sys.executable, str(REPO / "train.py"), "trainer=ddp_cpu", *SMALL,
            "method=adversarial", "trainer.max_epochs=8", f"paths.data_dir={tiny_imdb}",
            f"paths.log_dir={tmp_path}", "~callbacks.progress_bar"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "train" / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["epoch"] == 8
    assert metrics["test/acc"] >= 0.75, metrics  # it learns: chance is 0.5
