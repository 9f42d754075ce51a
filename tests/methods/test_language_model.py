"""method=language_model: the tied adaptive softmax, learning on the tiny IMDB fixture, and
whole runs: a checkpoint, resume, refusals, and a classifier fine-tuned from it, encoding with
its tokenizer; pretraining on your own folders and tables of texts (the token stream:
tests/data/test_token_stream.py)."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST, TOPICS, compose_train, topic_text

import dlexp
from dlexp import checkpoint, config, transfer
from dlexp.builders import build_net
from dlexp.data.imdb import IMDBDataModule
from dlexp.data.token_stream import TokenStreamDataModule
from dlexp.errors import CheckpointError, ConfigError
from dlexp.methods.language_model import LanguageModelTask
from dlexp.models.language_model import TiedAdaptiveSoftmax
from dlexp.models.rnn import RNNClassifier
from dlexp.train import train

SMALL = ["data=imdb", "model=lstm", "model.bidirectional=false", "model.embedding_dim=16",
         "model.hidden_size=24", "model.dropout=0.0", "model.embedding_dropout=0.0",
         "data.val_size=40", "data.tokenizer.vocab_size=200", "data.tokenizer.min_frequency=1",
         "optimizer.lr=0.01", "logger=none"]
LM = [*SMALL, "method=language_model", "method.task.cutoffs=[10]", "method.data.bptt=16",
      "method.data.batch_size=16", "+trainer.limit_train_batches=4",
      "+trainer.limit_val_batches=2"]


def _imdb(root: Path, **kwargs) -> IMDBDataModule:
    return IMDBDataModule(root=str(root), download=False, val_size=40,
                          tokenizer={"vocab_size": 200, "min_frequency": 1},
                          cache_dir=str(root / "cache"), **kwargs)


# ---------------------------------------------------------------- the head and the task
def test_adaptive_softmax_is_tied_to_the_embedding() -> None:
    embedding = torch.nn.Embedding(30, 8)
    head = TiedAdaptiveSoftmax(embedding, hidden_size=12, cutoffs=[10, 20, 500])
    assert head.cutoffs == [10, 20] and isinstance(head.project, torch.nn.Linear)
    assert not any(p is embedding.weight for p in head.parameters())  # saved once, in the net
    loss = head(torch.randn(40, 12), torch.randint(0, 30, (40,)))
    loss.backward()
    assert loss.item() > 0 and embedding.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="leave no cluster"):
        TiedAdaptiveSoftmax(embedding, 8, [2000])


def _task(vocab: int, bidirectional: bool = False) -> LanguageModelTask:
    torch.manual_seed(0)
    net = RNNClassifier(vocab, embedding_dim=16, hidden_size=24, bidirectional=bidirectional)
    return LanguageModelTask(net=net, optimizer=None, num_classes=2, cutoffs=[10])


def test_lm_loss_decreases_on_the_tiny_fixture(tiny_imdb: Path) -> None:
    data = TokenStreamDataModule(_imdb(tiny_imdb), bptt=16, batch_size=8)
    data.setup()
    task = _task(data.base.vocab_size)
    optimizer = torch.optim.Adam(task.parameters(), lr=0.01)
    losses = []
    for step, batch in zip(range(20), data.train_dataloader(), strict=False):
        loss = task._stream_loss(batch, "train")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        assert step == 0 or task._state[("train", 0)][0][0].grad_fn is None  # detached
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses


def test_a_stacked_bidirectional_encoder_is_refused() -> None:
    net = RNNClassifier(50, embedding_dim=8, hidden_size=8, bidirectional=True, num_layers=2)
    with pytest.raises(ValueError, match="model.num_layers=1 or model.bidirectional=false"):
        LanguageModelTask(net=net, optimizer=None, num_classes=2, cutoffs=[10])


def test_both_directions_of_a_bidirectional_encoder_learn(tiny_imdb: Path) -> None:
    data = TokenStreamDataModule(_imdb(tiny_imdb), bptt=16, batch_size=8, backward=True)
    data.setup()
    task = _task(data.base.vocab_size, bidirectional=True)
    before = [c.weight_hh_l0.detach().clone() for c in task.net.layers[0]]
    batch = next(iter(data.train_dataloader()))
    task._stream_loss(batch, "train").backward()
    assert all(c.weight_hh_l0.grad.abs().sum() > 0 for c in task.net.layers[0])
    assert all(torch.equal(b, c.weight_hh_l0) for b, c in zip(before, task.net.layers[0],
                                                               strict=True))
    with pytest.raises(ValueError, match="method.data.backward"):
        task._stream_loss(batch[:2], "train")


# ---------------------------------------------------------------- whole runs
def _run(out: Path, data: Path, *overrides: str) -> dict:
    return train(compose_train([*FAST, *LM, *overrides], out, data))


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory, tiny_imdb: Path) -> dict:
    metrics = _run(tmp_path_factory.mktemp("lm"), tiny_imdb, "trainer.max_epochs=1")
    assert metrics["status"] == "ok", metrics.get("error")
    return metrics


@pytest.mark.integration
def test_pretraining_writes_a_checkpoint_with_val_perplexity(pretrained: dict) -> None:
    assert pretrained["best_ckpt"] and Path(pretrained["best_ckpt"]).is_file()
    assert pretrained["val/ppl"] == pytest.approx(math.exp(pretrained["val/loss"]), rel=1e-4)
    assert "test/loss" not in pretrained and pretrained["monitor"] == "val/loss"
    state = checkpoint.load(pretrained["best_ckpt"])["state_dict"]
    assert any(k.startswith("lm_head.") for k in state) and "net.embedding.weight" in state


@pytest.mark.integration
def test_pretraining_resumes_from_its_checkpoint(pretrained: dict, tiny_imdb: Path,
                                                 tmp_path: Path) -> None:
    last = Path(pretrained["run_dir"]) / "checkpoints" / "last.ckpt"
    resumed = _run(tmp_path, tiny_imdb, "trainer.max_epochs=2", f"ckpt_path={last}")
    assert resumed["status"] == "ok", resumed.get("error")
    assert resumed["epoch"] == 2 and resumed["global_step"] == 2 * pretrained["global_step"]


@pytest.mark.integration
@pytest.mark.parametrize(("overrides", "message"), [
    (["method.data.parts=[train,unlabeled,test]"], "never on val or test text"),
    (["model.bidirectional=true", "model.num_layers=2"], "model.num_layers=1 or"),
    (["model.bidirectional=true", "method.data.backward=false"], "method.data.backward=false"),
    (["test=true"], "no test stage"),
])
def test_bad_language_model_settings_fail_before_training(tmp_path: Path, tiny_imdb: Path,
                                                         overrides: list, message: str) -> None:
    metrics = _run(tmp_path, tiny_imdb, *overrides)
    assert metrics["status"] == "failed" and message in metrics["error"], metrics
    assert not (tmp_path / "checkpoints").exists()


def test_an_image_model_is_refused(tmp_path: Path) -> None:
    cfg = compose_train(["method=language_model"], tmp_path)
    with pytest.raises(ConfigError, match="pretrains a text model"):
        config.check_method(cfg)


@pytest.mark.integration
def test_finetune_loads_the_pretrained_encoder_and_trains(pretrained: dict, tiny_imdb: Path,
                                                          tmp_path: Path) -> None:
    source = pretrained["best_ckpt"]
    ft = train(compose_train([*FAST, *SMALL, "transfer=finetune", f"transfer.source={source}",
                              "transfer.lr_decay=2.6", "model.pooling=concat",
                              "trainer.max_epochs=1", "data.batch_size=32"], tmp_path, tiny_imdb))
    assert ft["status"] == "ok", ft.get("error")
    assert ft["test/acc"] is not None and ft["epoch"] == 1


@pytest.mark.integration
def test_the_encoder_loads_into_a_classifier_unchanged(pretrained: dict, tiny_imdb: Path) -> None:
    path = pretrained["best_ckpt"]
    ckpt = checkpoint.load(path)
    model = {**ckpt["dlexp"]["config"]["model"], "pooling": "concat"}
    net = build_net(model, ckpt["dlexp"]["data"], load_pretrained=False)
    transfer.apply(net, {"mode": "finetune"}, (path, ckpt), ckpt["dlexp"]["data"])
    saved = ckpt["state_dict"]
    encoder = [k for k in net.state_dict() if not k.startswith("head.")]
    assert "embedding.weight" in encoder and "layers.0.0.weight_hh_l0" in encoder
    for k in encoder:
        assert torch.equal(net.state_dict()[k], saved[f"net.{k}"]), k


def _fine_tuned_on_the_sources_tokenizer(ft: dict, source: str) -> None:
    """The fine-tune trained and tested, its checkpoint carries the source's tokenizer, and it
    predicts a raw text from the checkpoint alone."""
    assert ft["status"] == "ok", ft.get("error")
    assert isinstance(ft["test/acc"], float) and 0 <= ft["test/acc"] <= 1
    tokenizer = checkpoint.load(source)["dlexp"]["data"]["tokenizer"]
    assert checkpoint.load(ft["best_ckpt"])["dlexp"]["data"]["tokenizer"] == tokenizer
    probs = dlexp.load(ft["best_ckpt"]).predict_texts(["a text it has never seen, great"])
    assert probs.shape[0] == 1 and float(probs.sum()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.integration
def test_a_classifier_encodes_with_the_sources_tokenizer(pretrained: dict, tiny_imdb: Path,
                                                         tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """The fine-tune's own data.tokenizer settings (here the defaults: 20000 words, min
    frequency 2) differ from the pretraining's: the source's tokenizer is used, with a warning."""
    source = pretrained["best_ckpt"]
    plain = [o for o in SMALL if not o.startswith("data.tokenizer.")]
    ft = train(compose_train([*FAST, *plain, "transfer=finetune", f"transfer.source={source}",
                              "trainer.max_epochs=1"], tmp_path, tiny_imdb))
    _fine_tuned_on_the_sources_tokenizer(ft, source)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"
              and "encoding with its tokenizer" in r.getMessage()]
    assert len(warned) == 1 and "vocab_size=20000 (the source's: 200)" in warned[0], warned


# ---------------------------------------------------------------- your own texts
def _own_texts(root: Path, data: str) -> list[str]:
    """Two topics of texts and unlabeled ones: a folder (train/<topic>, train/unsup, test/) or
    a table (a split column: train, test, unlabeled). Returns the data overrides."""
    rng = np.random.default_rng(0)
    rows = [(topic_text(rng, t), t, split) for split, n in (("train", 40), ("test", 10))
            for t in ("music", "sport") for _ in range(n)]
    rows += [(topic_text(rng, t), "", "unlabeled") for t in TOPICS for _ in range(30)]
    if data == "text_table":
        with open(root / "texts.csv", "w", newline="") as f:
            csv.writer(f).writerows([("text", "label", "split"), *rows])
        return ["data=text_table", f"data.path={root / 'texts.csv'}"]
    for i, (text, topic, split) in enumerate(rows):
        folder = root / "texts" / ("train/unsup" if split == "unlabeled" else f"{split}/{topic}")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.txt").write_text(text)
    return ["data=text_folder", f"data.root={root / 'texts'}"]


@pytest.mark.integration
@pytest.mark.parametrize("data", ["text_folder", "text_table"])
def test_pretrain_on_your_own_texts_then_fine_tune(tmp_path: Path, data: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """Your unlabeled texts pretrain the encoder (no val/test text: the stream is checked), your
    labeled ones fine-tune it with other tokenizer settings; the test accuracy is reported."""
    caplog.set_level(logging.INFO, logger="dlexp.data.token_stream")
    own = [*_own_texts(tmp_path, data), f"data.cache_dir={tmp_path / 'cache'}",
           "data.val_size=10"]
    lm = _run(tmp_path / "lm", tmp_path, *own, "trainer.max_epochs=1")
    assert lm["status"] == "ok", lm.get("error")
    assert math.isfinite(lm["val/loss"])
    streams = [r.getMessage() for r in caplog.records
               if r.getMessage().startswith("language model: ")]
    assert len(streams) == 1, streams  # 80 training texts - 10 for val, + 90 unlabeled
    assert streams[0].startswith("language model: 160 texts (train+unlabeled), ")
    assert streams[0].endswith("; validation 10 texts")
    plain = [o for o in SMALL if not o.startswith(("data.tokenizer.", "data=", "data.val_size"))]
    ft = train(compose_train([*FAST, *plain, *own, "transfer=finetune", "trainer.max_epochs=1",
                              f"transfer.source={lm['best_ckpt']}", "data.batch_size=16"],
                             tmp_path / "ft", tmp_path))
    _fine_tuned_on_the_sources_tokenizer(ft, lm["best_ckpt"])


@pytest.mark.integration
def test_a_bidirectional_encoder_pretrains_and_fine_tunes(tiny_imdb: Path, tmp_path: Path) -> None:
    lm = _run(tmp_path / "lm", tiny_imdb, "model.bidirectional=true", "trainer.max_epochs=1")
    assert lm["status"] == "ok", lm.get("error")
    assert math.isfinite(lm["val/ppl"])
    ft = train(compose_train([*FAST, *SMALL, "model.bidirectional=true", "transfer=finetune",
                              f"transfer.source={lm['best_ckpt']}", "trainer.max_epochs=1"],
                             tmp_path / "ft", tiny_imdb))
    assert ft["status"] == "ok", ft.get("error")


@pytest.mark.integration
def test_gradual_unfreezing_of_the_pretrained_encoder(pretrained: dict, tiny_imdb: Path,
                                                      tmp_path: Path) -> None:
    source = pretrained["best_ckpt"]
    ft = train(compose_train([*FAST, *SMALL, "transfer=gradual", f"transfer.source={source}",
                              "transfer.unfreeze_at_epoch=1", "trainer.max_epochs=2",
                              "data.batch_size=32"], tmp_path, tiny_imdb))
    assert ft["status"] == "ok", ft.get("error")
    tuned = checkpoint.load(str(tmp_path / "checkpoints" / "last.ckpt"))["state_dict"]
    saved = checkpoint.load(source)["state_dict"]
    assert not torch.equal(tuned["net.embedding.weight"], saved["net.embedding.weight"])


@pytest.mark.integration
def test_eval_and_predict_refuse_a_language_model(pretrained: dict) -> None:
    path = pretrained["best_ckpt"]
    with pytest.raises(CheckpointError, match="is a language model"):
        checkpoint.rebuild_task(checkpoint.load(path), path)
