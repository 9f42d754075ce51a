"""The product's environment variables, each tested on purpose, and a suite that passes
whatever of them the user has set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, compose_train

from dlexp.data.imdb import IMDBDataModule
from dlexp.data.mnist import MNISTDataModule


def test_dlexp_data_dir_is_where_runs_look_for_data(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert compose_train([], tmp_path).paths.data_dir == "data"
    monkeypatch.setenv("DLEXP_DATA_DIR", str(tmp_path / "elsewhere"))
    assert compose_train([], tmp_path).paths.data_dir == str(tmp_path / "elsewhere")
    assert MNISTDataModule().root == tmp_path / "elsewhere"
    assert compose_train(["paths.data_dir=given"], tmp_path).paths.data_dir == "given"


def test_dlexp_cache_dir_is_where_token_ids_go(tiny_imdb: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLEXP_CACHE_DIR", str(tmp_path / "cache"))
    dm = IMDBDataModule(root=str(tiny_imdb), val_size=20)
    assert dm.cache_dir == tmp_path / "cache"


@pytest.mark.integration
def test_the_suite_passes_with_the_users_settings(tmp_path: Path) -> None:
    """The tests that once read the user's DLEXP_CACHE_DIR and DLEXP_DATA_DIR, run with both
    set to places that would break them."""
    env = {**os.environ, "DLEXP_CACHE_DIR": str(tmp_path / "cache"),
           "DLEXP_DATA_DIR": str(tmp_path / "no-data")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/data/test_imdb.py::test_download_checks_the_sha256",
                           "tests/data/test_imdb.py::test_cache_dir_defaults",
                           "tests/data/test_mnist.py"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
