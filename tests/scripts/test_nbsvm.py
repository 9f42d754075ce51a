"""scripts/nbsvm.py: the NB-weighted logistic-regression baseline on IMDB's split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TEST_ONLY, make_imdb_tree, script_module
from scipy import sparse

nbsvm = script_module("nbsvm")


def test_grams_are_the_tokenizers_words_and_their_pairs() -> None:
    assert nbsvm.grams("Great film!!<br />Loved it") == {
        "great", "film", "!!", "loved", "it", "great film", "film !!", "!! loved", "loved it"}


def test_nb_ratios_lean_to_the_class_a_gram_appears_in() -> None:
    x = sparse.csr_matrix(np.array([[1, 0, 1], [1, 0, 1], [0, 1, 1], [0, 1, 1]], dtype=float))
    r = nbsvm.nb_ratios(x, np.array([1, 1, 0, 0]))
    assert r[0] > 0 > r[1] and r[2] == pytest.approx(0.0)


def test_logistic_regression_separates_separable_data() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    x = sparse.csr_matrix(np.c_[y * 2.0 - 1 + rng.normal(0, 0.3, 200), rng.normal(0, 1, 200)])
    wb = nbsvm.fit_logistic(x, y, c=1.0)
    assert nbsvm.accuracy(x, y, wb) > 0.95 and abs(wb[0]) > 5 * abs(wb[1])


def test_run_on_the_imdb_layout_learns_from_train_only(tmp_path: Path) -> None:
    root = make_imdb_tree(tmp_path, n_train=60, n_test=40, n_unsup=0)
    data = nbsvm.load_split(root / "aclImdb", val_size=20, seed=0)
    assert [len(data[p][0]) for p in ("train", "val", "test")] == [100, 20, 80]
    vocab = nbsvm.vocabulary([nbsvm.grams(t) for t in data["train"][0]])
    assert TEST_ONLY not in vocab  # planted in test reviews only
    metrics = nbsvm.run(root / "aclImdb", val_size=20, seed=0, grid=(0.1, 1.0))
    assert metrics["test/acc"] >= 0.9 and metrics["C"] in (0.1, 1.0)


def test_main_writes_its_metrics_and_refuses_missing_data(tmp_path: Path, capsys) -> None:
    root = make_imdb_tree(tmp_path, n_train=30, n_test=20, n_unsup=0)
    out = tmp_path / "m.json"
    nbsvm.main(["--source", str(root / "aclImdb"), "--val-size", "10", "--json", str(out)])
    assert 0.0 <= json.loads(out.read_text())["test/acc"] <= 1.0
    with pytest.raises(SystemExit, match="no IMDB data"):
        nbsvm.main(["--source", str(tmp_path / "missing")])
