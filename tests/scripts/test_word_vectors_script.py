"""scripts/word_vectors.py: PPMI co-occurrence vectors from unlabeled reviews."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import FAST, TEST_ONLY, compose_train, script_module

from dlexp import checkpoint
from dlexp.models.word_vectors import read_word_vectors
from dlexp.train import train

wv = script_module("word_vectors")


def test_cooccurrences_are_symmetric_weighted_and_stay_inside_a_review() -> None:
    flat = torch.tensor([2, 3, 4, 5, 6], dtype=torch.int32)  # reviews [2 3 4] and [5 6]
    offsets = torch.tensor([0, 3, 5])
    counts = wv.cooccurrences(flat, offsets, vocab=7, window=2).to_dense()
    assert torch.equal(counts, counts.t())
    assert counts[2, 3] == 1 and counts[2, 4] == 0.5  # distance 1, distance 2
    assert counts[4, 5] == 0  # across the review boundary
    assert counts[0].sum() == 0 and counts[1].sum() == 0  # pad and unk never count


def test_ppmi_keeps_only_positive_associations() -> None:
    counts = torch.tensor([[0.0, 10, 1, 0], [10, 0, 0, 1], [1, 0, 0, 10], [0, 1, 10, 0]])
    counts = counts.to_sparse().coalesce()
    values = wv.ppmi(counts, alpha=1.0).coalesce()
    assert (values.values() > 0).all()
    dense = values.to_dense()
    assert dense[0, 1] > 0 and dense[0, 2] == 0  # 0-1 co-occur more than chance, 0-2 less


def test_script_learns_from_unlabeled_reviews_only(tmp_path: Path, tiny_imdb: Path) -> None:
    out = tmp_path / "vectors.txt"
    assert wv.main(["--source", str(tiny_imdb / "aclImdb"), "--out", str(out), "--dim", "8",
                    "--vocab", "500", "--min-count", "1", "--window", "3",
                    "--val-size", "40"]) == 0
    words = [line.split(" ", 1)[0] for line in out.read_text().splitlines()]
    assert "[PAD]" not in words and "[UNK]" not in words and "movie" in words
    assert TEST_ONLY not in words  # planted in test reviews only
    matrix, found = read_word_vectors(out, {w: i for i, w in enumerate(words)}, 8)
    assert found.all() and torch.isfinite(matrix).all()
    assert abs(float(matrix.std()) - 1) < 0.05  # scaled like nn.Embedding's N(0, 1)


def test_the_corpus_never_holds_a_validation_or_test_review() -> None:
    reviews = {f"train/{c}": [(i, f"{c} review {i}") for i in range(5)] for c in ("neg", "pos")}
    reviews |= {"test/neg": [(0, "a test review")], "test/pos": [(0, "another test review")],
                "train/unsup": [(0, "free text"), (1, "a test review")]}
    assert wv.corpus(reviews, Path("aclImdb"), False, 2, 0) == ["free text"]
    texts = wv.corpus(reviews, Path("aclImdb"), True, 2, 0)
    training = [t for t in texts if "review" in t]
    assert texts[0] == "free text" and len(training) == 8 == len(set(training))
    _, val = wv.splits.shuffled_split(10, 2, 0)
    labeled = [f"{c} review {i}" for c in ("neg", "pos") for i in range(5)]
    assert not {labeled[i] for i in val.tolist()} & set(texts)


def test_script_without_data_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("DLEXP_DATA_DIR", str(tmp_path))
    assert wv.main(["--out", str(tmp_path / "v.txt")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no aclImdb_v1.tar.gz or aclImdb/") and err.count("\n") == 1


@pytest.mark.integration
def test_its_vectors_initialise_an_imdb_classifier(tmp_path: Path, tiny_imdb: Path) -> None:
    """The ladder's rung: the script's file is what model.vectors reads, row for row."""
    out = tmp_path / "vectors.txt"
    assert wv.main(["--source", str(tiny_imdb / "aclImdb"), "--out", str(out), "--dim", "8",
                    "--vocab", "500", "--min-count", "1", "--window", "3",
                    "--val-size", "40"]) == 0
    metrics = train(compose_train([
        *FAST, "data=imdb", "model=lstm", "model.embedding_dim=8", "model.hidden_size=8",
        "data.val_size=40", f"data.cache_dir={tmp_path / 'cache'}", "trainer.max_epochs=1",
        "logger=none", f"model.vectors={out}", "model.freeze_embedding=true"],
        tmp_path / "run", tiny_imdb))
    assert metrics["status"] == "ok", metrics.get("error")
    ckpt = checkpoint.load(metrics["best_ckpt"])
    vocab = json.loads(ckpt["dlexp"]["data"]["tokenizer"])["model"]["vocab"]
    matrix, found = read_word_vectors(out, vocab, 8)
    found[0] = False  # the padding row stays zero
    assert found.sum() >= 0.9 * (len(vocab) - 2)  # the same words: all but [PAD], [UNK]
    weight = ckpt["state_dict"]["net.embedding.weight"]
    assert torch.equal(weight[found], matrix[found]) and weight[0].abs().sum() == 0
