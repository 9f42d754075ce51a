"""IMDB-style sentiment end to end on a generated aclImdb tree: training learns, the run keeps
the tokenizer, eval and predict work from the checkpoint alone, word vectors initialise the
embedding. A learning test on real reviews runs when DLEXP_DATA_DIR holds aclImdb."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FAST, NEGATIVE, POSITIVE, REPO, compose_train

from dlexp import checkpoint
from dlexp.models.word_vectors import write_word_vectors
from dlexp.predict import main as predict_main
from dlexp.predict import predict_texts
from dlexp.train import train

SMALL_LSTM = ["data=imdb", "model=lstm", "model.embedding_dim=16", "model.hidden_size=16",
              "model.dropout=0.0", "model.embedding_dropout=0.0", "optimizer.lr=0.01",
              "data.val_size=40", "data.batch_size=16", "data.eval_batch_size=64",
              "data.tokenizer.vocab_size=200", "data.tokenizer.min_frequency=1"]


def run(out: Path, data: Path, *overrides: str) -> dict:
    return train(compose_train([*FAST, *SMALL_LSTM, *overrides], out, data))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_imdb: Path) -> dict:
    out = tmp_path_factory.mktemp("imdb_run")
    metrics = run(out, tiny_imdb, "trainer.max_epochs=6", "logger=csv")
    assert metrics["status"] == "ok", metrics.get("error")
    return metrics


def test_lstm_learns_the_generated_sentiment(trained: dict) -> None:
    # chance is 0.5; the reviews carry one to three sentiment words among up to 150 fillers
    assert trained["val/acc"] >= 0.85 and trained["test/acc"] >= 0.85, trained
    assert trained["train/samples_per_s"] > 0 and trained["epoch"] == 6


def test_run_dir_and_checkpoint_carry_the_same_tokenizer(trained: dict) -> None:
    run_dir = Path(trained["run_dir"])
    saved = (run_dir / "tokenizer.json").read_text()
    ckpt = checkpoint.load(trained["best_ckpt"])
    assert ckpt["dlexp"]["data"]["tokenizer"] == saved
    assert json.loads(saved)["model"]["type"] == "WordLevel"
    assert ckpt["dlexp"]["data"]["modality"] == "text"


def test_predict_from_a_moved_checkpoint(trained: dict, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / "sentiment.ckpt"
    moved.parent.mkdir()
    shutil.copy(trained["best_ckpt"], moved)
    texts = [f"The movie is {POSITIVE[0]} and {POSITIVE[1]}.",
             f"The movie is {NEGATIVE[0]}, {NEGATIVE[1]} and a {NEGATIVE[3]}!"]
    ranked = predict_texts(str(moved), texts)
    assert [top[0][0] for top in ranked] == ["positive", "negative"]
    assert all(abs(sum(p for _, p in top) - 1) < 1e-5 for top in ranked)


def test_predict_cli_reads_reviews_from_a_file(trained: dict, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    reviews = tmp_path / "reviews.txt"
    reviews.write_text(f"a {POSITIVE[2]} film\n\n{NEGATIVE[2]} plot, {NEGATIVE[4]} ever\n")
    predict_main([trained["best_ckpt"], "--file", str(reviews), "--json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["class"] for line in lines] == ["positive", "negative"]
    assert lines[0]["text"].startswith("a ") and 0.5 <= lines[0]["probability"] <= 1


def test_predict_missing_review_file_is_one_line(trained: dict, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        predict_main([trained["best_ckpt"], "--file", str(tmp_path / "missing.txt")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read --file ") and "missing.txt" in err
    assert err.count("\n") == 1


def test_eval_reproduces_the_test_accuracy(trained: dict, tiny_imdb: Path,
                                           tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "eval.py"),
                             f"ckpt_path={trained['best_ckpt']}", f"data_dir={tiny_imdb}",
                             f"paths.log_dir={tmp_path}", "trainer.accelerator=cpu"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = (tmp_path / "eval" / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-6)


def test_frozen_pretrained_vectors_initialise_the_embedding_and_stay(tmp_path: Path,
                                                                    tiny_imdb: Path) -> None:
    vectors = write_word_vectors(tmp_path / "vectors.txt", [POSITIVE[0], NEGATIVE[0], "movie"],
                                 torch.tensor([[1.0] * 16, [-1.0] * 16, [0.5] * 16]))
    metrics = run(tmp_path / "run", tiny_imdb, "trainer.max_epochs=1", "logger=none",
                  f"model.vectors={vectors}", "model.freeze_embedding=true")
    assert metrics["status"] == "ok", metrics.get("error")
    ckpt = checkpoint.load(metrics["best_ckpt"])
    vocab = json.loads(ckpt["dlexp"]["data"]["tokenizer"])["model"]["vocab"]
    weight = ckpt["state_dict"]["net.embedding.weight"]
    assert weight[vocab[POSITIVE[0]]].tolist() == [1.0] * 16
    assert weight[vocab["movie"]].tolist() == [0.5] * 16
    assert weight[0].abs().sum() == 0  # padding row


def test_vectors_of_the_wrong_size_fail_before_training(tmp_path: Path, tiny_imdb: Path) -> None:
    vectors = write_word_vectors(tmp_path / "v.txt", ["movie"], torch.ones(1, 7))
    metrics = run(tmp_path / "run", tiny_imdb, f"model.vectors={vectors}", "logger=none")
    assert metrics["status"] == "failed"
    assert "has 7 values but the embedding has 16; set model.embedding_dim=7" in metrics["error"]


def test_lstm_on_real_reviews_learns(tmp_path: Path, real_imdb_dir: Path) -> None:
    """5000 real reviews, three epochs: >= 75% validation accuracy (chance 50%)."""
    metrics = train(compose_train([
        *FAST, "data=imdb", "model=lstm", "data.num_labeled=5000", "data.val_size=1000", "data.max_len=200",
        "data.truncate=head_tail", "model.embedding_dim=64", "model.hidden_size=64",
        "optimizer.lr=0.004", "trainer.max_epochs=3", "test=false", "logger=none"],
        tmp_path, real_imdb_dir))
    assert metrics["status"] == "ok", metrics.get("error")
    assert metrics["val/acc"] >= 0.75, metrics


@pytest.mark.parametrize("method", ["fixmatch", "pseudo_label"])
def test_semi_supervised_methods_run_on_reviews(method: str, tmp_path: Path,
                                                tiny_imdb: Path) -> None:
    """Text views (token dropout and swaps) for FixMatch; pool predictions for pseudo-labels;
    the pool mixes labeled-but-hidden reviews and train/unsup ones (label -1)."""
    extra = (["method.unlabeled_ratio=2", "method.task.threshold=0.6"] if method == "fixmatch"
             else ["method.callbacks.pseudo_label.rounds=1", "trainer.max_epochs=2",
                   "method.callbacks.pseudo_label.warmup_epochs=1",
                   "method.callbacks.pseudo_label.epochs_per_round=1",
                   "method.callbacks.pseudo_label.threshold=0.5"])
    metrics = run(tmp_path, tiny_imdb, f"method={method}", "data.num_labeled=60",
                  "logger=csv", "trainer.max_epochs=2", *extra)
    assert metrics["status"] == "ok", metrics.get("error")
    with open(tmp_path / "csv" / "metrics.csv") as f:
        logged = f.readline().split(",")
    wanted = "train/mask_rate" if method == "fixmatch" else "pseudo/added"
    assert any(name.startswith(wanted) for name in logged), logged


def test_misclassified_reviews_are_written_as_text(trained: dict) -> None:
    table = Path(trained["run_dir"]) / "figures" / "misclassified.md"
    assert table.is_file() == (trained["test/acc"] < 1.0)
    if table.is_file():
        rows = table.read_text().splitlines()[2:]
        assert rows and all(r.count(" | ") >= 2 for r in rows)
        assert any(w in table.read_text() for w in POSITIVE + NEGATIVE + ("movie", "film"))
