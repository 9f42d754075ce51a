"""Your own data, on the real datasets (slow; skipped when DLEXP_DATA_DIR does not hold them):
the same MNIST as PNG class folders (``data=image_folder``) and as an ``.npz``
(``data=arrays``), and the same aclImdb reviews as a folder (``data=text_folder``) and as a
Parquet table (``data=text_table``), each trained as its built-in twin (``data=mnist``,
``data=imdb``) with the same model and seed, must score as the twin does."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST, compose_train, script_module

from dlexp.train import train

pytestmark = pytest.mark.slow

bench = script_module("loader_bench")

# the tuned CNN (3 epochs); data=mnist holds out 5000 training images for validation
MNIST_RUN = [*FAST, "experiment=mnist_cnn", "logger=none", "data.val_size=5000"]
MNIST_POINTS = 0.003
# a small LSTM, max-pooled over time, 2 epochs on 128 tokens a review: minutes on 2 cores.
# data=imdb holds out 2500 training reviews; the tokenizer settings are spelt out for all three
IMDB_RUN = [*FAST, "model=lstm", "model.embedding_dim=32", "model.hidden_size=16",
            "model.bidirectional=false", "model.pooling=max", "optimizer=adamw",
            "optimizer.lr=0.005", "scheduler=onecycle", "callbacks=no_early_stopping",
            "trainer.max_epochs=2", "trainer.gradient_clip_val=1.0", "logger=none",
            "data.val_size=2500", "data.batch_size=64", "data.max_len=128",
            "data.truncate=head_tail", "data.tokenizer.model=word",
            "data.tokenizer.vocab_size=10000", "data.tokenizer.min_frequency=2",
            "data.tokenizer.use_unsup=false"]
IMDB_POINTS = 0.005


def run(overrides: list[str], out: Path, data_root: Path) -> dict:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import read_write

    cfg = compose_train(overrides, out, data_root)
    with read_write(cfg.hydra.runtime):  # as in a train.py run: the texts' split goes there
        cfg.hydra.runtime.output_dir = str(out)
    HydraConfig().set_config(cfg)
    metrics = train(cfg)
    assert metrics["status"] == "ok", metrics.get("error")
    print(f"{' '.join(o for o in overrides if o.startswith('data'))}: test/acc "
          f"{metrics['test/acc']:.4f}, fit {metrics['fit_s']} s")
    return metrics


# ---------------------------------------------------------------- MNIST
@pytest.fixture(scope="module")
def mnist_root() -> Path:
    from conftest import real_mnist_root

    return real_mnist_root()


@pytest.fixture(scope="module")
def mnist_acc(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> float:
    """Test accuracy of data=mnist, the twin both MNIST tests compare with."""
    return run(["data=mnist", *MNIST_RUN], tmp_path_factory.mktemp("mnist_run"),
               mnist_root)["test/acc"]


def test_mnist_png_folders_score_as_data_mnist(mnist_root: Path, mnist_acc: float,
                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    pngs = tmp_path_factory.mktemp("mnist_png")
    assert bench.make_mnist_splits(pngs, mnist_root) == {"train": 60000, "test": 10000}
    out = tmp_path_factory.mktemp("folder_run")
    acc = run(["data=image_folder", f"data.root={pngs}", f"data.cache_dir={out / 'cache'}",
               *MNIST_RUN], out, mnist_root)["test/acc"]
    assert abs(acc - mnist_acc) <= MNIST_POINTS, (acc, mnist_acc)
    assert len((out / "split" / "val.txt").read_text().split()) == 5000
    assert len((out / "split" / "test.txt").read_text().split()) == 10000


def test_mnist_npz_scores_as_data_mnist(mnist_root: Path, mnist_acc: float,
                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    """The arrays as ``keras.datasets.mnist.load_data()`` gives them; the validation part is a
    stratified 5000 of the 60k (data=mnist draws its 5000 unstratified: near the same)."""
    npz = tmp_path_factory.mktemp("mnist_npz") / "mnist.npz"
    (x_train, y_train), (x_test, y_test) = (bench.mnist_part(mnist_root, *names)
                                            for names in bench.MNIST_FILES)
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    np.savez(npz, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    acc = run(["data=arrays", f"data.path={npz}", *MNIST_RUN],
              tmp_path_factory.mktemp("arrays_run"), mnist_root)["test/acc"]
    assert abs(acc - mnist_acc) <= MNIST_POINTS, (acc, mnist_acc)


# ---------------------------------------------------------------- IMDB
@pytest.fixture(scope="module")
def imdb_root() -> Path:
    from conftest import REAL_DATA

    root = Path(REAL_DATA or "")
    if not REAL_DATA or not (root / "aclImdb_v1.tar.gz").is_file():
        pytest.skip("real IMDB not found: set DLEXP_DATA_DIR to a folder holding "
                    "aclImdb_v1.tar.gz")
    return root


@pytest.fixture(scope="module")
def aclimdb(imdb_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The official tarball extracted once: ``<tmp>/aclImdb`` (train/test/{pos,neg}, unsup)."""
    out = tmp_path_factory.mktemp("imdb_extracted")
    with tarfile.open(imdb_root / "aclImdb_v1.tar.gz") as tar:
        tar.extractall(out, filter="data")
    return out / "aclImdb"


@pytest.fixture(scope="module")
def imdb_acc(imdb_root: Path, tmp_path_factory: pytest.TempPathFactory) -> float:
    out = tmp_path_factory.mktemp("imdb_run")
    return run(["data=imdb", f"data.cache_dir={out / 'cache'}", *IMDB_RUN], out,
               imdb_root)["test/acc"]


def test_aclimdb_folder_scores_as_data_imdb(aclimdb: Path, imdb_acc: float,
                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    out = tmp_path_factory.mktemp("text_folder_run")
    acc = run(["data=text_folder", f"data.root={aclimdb}", f"data.cache_dir={out / 'cache'}",
               *IMDB_RUN], out, aclimdb.parent)["test/acc"]
    assert abs(acc - imdb_acc) <= IMDB_POINTS, (acc, imdb_acc)
    split = {name: len((out / "split" / f"{name}.txt").read_text().split())
             for name in ("train", "val", "test", "unlabeled")}
    assert split == {"train": 22500, "val": 2500, "test": 25000, "unlabeled": 50000}


def test_aclimdb_parquet_table_scores_as_data_imdb(aclimdb: Path, imdb_acc: float,
                                                   tmp_path_factory: pytest.TempPathFactory
                                                   ) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = {"text": [], "label": [], "split": []}
    for split in ("train", "test"):
        for label in ("neg", "pos"):
            for path in sorted((aclimdb / split / label).glob("*.txt")):
                rows["text"].append(path.read_text(encoding="utf-8"))
                rows["label"].append(label)
                rows["split"].append(split)
    table = tmp_path_factory.mktemp("imdb_table") / "reviews.parquet"
    pq.write_table(pa.table(rows), table)
    out = tmp_path_factory.mktemp("text_table_run")
    acc = run(["data=text_table", f"data.path={table}", f"data.cache_dir={out / 'cache'}",
               *IMDB_RUN], out, table.parent)["test/acc"]
    assert abs(acc - imdb_acc) <= IMDB_POINTS, (acc, imdb_acc)
