"""Shared fixtures: tiny generated datasets so every test runs anywhere, offline."""

from __future__ import annotations

import importlib.util
import os
import signal
import struct
import sys
import types
import zlib
from collections.abc import Iterator
from pathlib import Path

import browser
import numpy as np
import pytest
import torch

from dlexp.data.idx import write_idx

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = str(REPO / "conf")


def script_module(name: str) -> types.ModuleType:
    """``scripts/<name>.py`` as the module ``name``, loaded once for the whole session: its
    dataclasses and its worker processes look it up in ``sys.modules``, and a second copy of it
    would make pickling its functions fail."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


# whole runs, subprocesses, sweeps, DDP, real data: `pytest -m "not integration"` skips them
INTEGRATION_MODULES = {
    "test_train.py", "test_train_text.py", "test_eval_predict.py", "test_transfer.py",
    "test_sweeps.py", "test_report.py", "test_slurm.py", "test_ddp.py", "test_real_mnist.py",
    "test_wheel.py", "test_plugins.py", "test_presets.py", "test_real_data.py",
    "test_training_curves.py", "test_benchmark.py", "test_word_vectors_script.py",
    "test_export.py"}


# A suite started in the background (`cmd &` in a script, nohup) inherits SIGINT ignored, and so
# would every process the tests start: the Ctrl+C tests need it delivered as a terminal does.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Where the real data is, read once from the environment the tests were started in. Every test
# then runs without the user's DLEXP_* settings (a test that needs one sets it): the suite
# passes whatever the user has set, and each variable is tested on purpose.
REAL_DATA = os.environ.get("DLEXP_DATA_DIR")
TEST_SETTINGS = {"DLEXP_CHROMIUM", "DLEXP_TEST_ARTIFACTS"}  # for the tests, not the product


@pytest.fixture(autouse=True)
def _without_dlexp_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("DLEXP_") and n not in TEST_SETTINGS]:
        monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _torch_settings_restored() -> Iterator[None]:
    """A run in this process may set torch's threads or matmul precision (``threads=1``): later
    tests must not inherit them, or an in-process run and a subprocess run of the same config
    would sum in different orders and no longer agree bit for bit."""
    threads, precision = torch.get_num_threads(), torch.get_float32_matmul_precision()
    yield
    torch.set_num_threads(threads)
    torch.set_float32_matmul_precision(precision)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        real_data = {"real_data_dir", "real_imdb_dir"} & set(getattr(item, "fixturenames", ()))
        if item.path.name in INTEGRATION_MODULES or real_data or item.get_closest_marker("slow") \
                or item.get_closest_marker("slurm"):
            item.add_marker(pytest.mark.integration)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if browser.SAVED:
        folders = ", ".join(sorted({str(p.parent) for p in browser.SAVED}))
        terminalreporter.write_line(f"browser screenshots ({len(browser.SAVED)}) in {folders}")


# ---------------------------------------------------------------- browser (tests/browser.py)
@pytest.fixture(scope="session")
def chromium() -> Iterator:
    """One headless Chromium (a Playwright ``Browser``) for the session; skips without one."""
    with browser.launch_chromium() as instance:
        yield instance


@pytest.fixture
def page(chromium) -> Iterator:
    """A fresh page in its own browser context, closed after the test."""
    context = chromium.new_context(viewport=browser.VIEWPORT)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where tests save files for people to look at: ``$DLEXP_TEST_ARTIFACTS``, else a
    temporary folder (pytest's summary prints it)."""
    return browser.artifacts_dir(tmp_path_factory)


# ---------------------------------------------------------------- MNIST
def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """28x28 uint8 images whose class is easy to learn: class c lights a 4x4 block at one of
    ten positions, on a noisy dark background (light digits on dark, like MNIST)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
    for i, c in enumerate(labels):
        r, q = 4 + 8 * (c // 4), 2 + 6 * (c % 4)
        images[i, r : r + 6, q : q + 6] = rng.integers(180, 256, size=(6, 6))
    return images, labels.astype(np.uint8)


def make_mnist_tree(root: Path, n_train: int = 600, n_test: int = 200, gz: bool = True) -> Path:
    """Write the four IDX files in torchvision's layout: ``root/MNIST/raw/*-ubyte[.gz]``."""
    raw = root / "MNIST" / "raw"
    ext = ".gz" if gz else ""
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = synthetic_digits(n, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte{ext}", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte{ext}", labels)
    return root


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with 600 train and 200 test synthetic digits."""
    return make_mnist_tree(tmp_path_factory.mktemp("mnist"))


DIGIT_NAMES = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                        "nine"])


def make_arrays_npz(path: Path, n_train: int = 300, n_test: int = 0, names: bool = True) -> Path:
    """``np.savez`` of the synthetic digits as ``keras.datasets.mnist.load_data()`` gives them
    (``x_train`` uint8 (N, 28, 28)), labelled with the digits' names (or numbers); with
    ``n_test``, also ``x_test, y_test``."""
    x, y = synthetic_digits(n_train, 0)
    arrays = {"x_train": x, "y_train": DIGIT_NAMES[y] if names else y}
    if n_test:
        xt, yt = synthetic_digits(n_test, 1)
        arrays |= {"x_test": xt, "y_test": DIGIT_NAMES[yt] if names else yt}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="session")
def tiny_arrays(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An .npz of 300 synthetic digits named "zero".."nine", no validation or test part."""
    return make_arrays_npz(tmp_path_factory.mktemp("arrays") / "digits.npz")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """No network: every download attempt fails as offline machines do; lists the URLs tried."""
    from dlexp.data import download

    tried: list[str] = []

    def urlopen(url: str, timeout: float = 0) -> None:
        tried.append(url)
        raise OSError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(download.urllib.request, "urlopen", urlopen)
    return tried


def real_mnist_root() -> Path:
    """``$DLEXP_DATA_DIR`` when it holds the real MNIST files; skips the test otherwise."""
    root = REAL_DATA
    if not root or not (Path(root) / "MNIST" / "raw").is_dir():
        pytest.skip("real MNIST not found: set DLEXP_DATA_DIR to a folder holding MNIST/raw/")
    return Path(root)


@pytest.fixture
def real_data_dir() -> Path:
    """``$DLEXP_DATA_DIR`` when it holds the real MNIST files; skips the test otherwise."""
    return real_mnist_root()


def compose_train(overrides: list[str], out_dir: Path, data_root: Path | None = None):
    """Compose ``conf/train.yaml`` as ``python train.py`` would, with outputs under ``out_dir``
    and HydraConfig set, so ``${hydra:...}`` interpolations resolve outside a Hydra app."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    extra = [f"paths.log_dir={out_dir}", f"hydra.run.dir={out_dir}"]
    if data_root is not None:
        extra.append(f"paths.data_dir={data_root}")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=extra + list(overrides), return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out_dir)
    GlobalHydra.instance().clear()
    return cfg


FAST = ["trainer.accelerator=cpu", "+trainer.enable_progress_bar=false",
        "+trainer.enable_model_summary=false", "~callbacks.progress_bar",
        "~callbacks.model_summary"]
TINY_DATA = ["data.val_size=100", "data.batch_size=32", "data.eval_batch_size=100"]


# ---------------------------------------------------------------- IMDB
POSITIVE = ("great", "wonderful", "loved", "brilliant", "superb", "enjoyable")
NEGATIVE = ("awful", "boring", "terrible", "waste", "worst", "dull")
FILLER = ("the", "movie", "film", "plot", "actor", "scene", "story", "was", "and", "a", "it",
          "this", "of", "to", "with", "director", "cast", "ending", "music", "character")
TEST_ONLY = "zanzibar"  # planted in test reviews only: the vocabulary must never see it


def _review(rng: np.random.Generator, label: int, test: bool) -> str:
    """5-150 words of filler with a few sentiment words of the class (none when unlabeled),
    some capitalised, some followed by punctuation, some with ``<br />`` line breaks."""
    words = list(rng.choice(FILLER, size=int(rng.integers(5, 150))))
    cue = {1: POSITIVE, 0: NEGATIVE}.get(label, POSITIVE + NEGATIVE)
    words += list(rng.choice(cue, size=int(rng.integers(1, 4)) if label >= 0 else 1))
    words += [TEST_ONLY] if test else []
    rng.shuffle(words)
    words = [w.capitalize() if rng.random() < 0.1 else w for w in words]
    words = [w + str(rng.choice(["!", ".", ","])) if rng.random() < 0.1 else w for w in words]
    if rng.random() < 0.3:
        words.insert(len(words) // 2, "<br /><br />")
    return " ".join(words)


def make_imdb_tree(root: Path, n_train: int = 100, n_test: int = 50, n_unsup: int = 150,
                   seed: int = 0) -> Path:
    """Write ``root/aclImdb`` like the official release: ``{train,test}/{pos,neg}`` with
    ``n_train``/``n_test`` reviews per class and ``train/unsup``, files ``<id>_<rating>.txt``
    (pos 7-10, neg 1-4, unsup 0), plus the README/url files the reader must skip."""
    rng = np.random.default_rng(seed)
    base = root / "aclImdb"
    for split, n in (("train", n_train), ("test", n_test)):
        for folder, label, ratings in (("neg", 0, (1, 5)), ("pos", 1, (7, 11))):
            out = base / split / folder
            out.mkdir(parents=True)
            for i in range(n):
                text = _review(rng, label, split == "test")
                (out / f"{i}_{rng.integers(*ratings)}.txt").write_text(text, encoding="utf-8")
            (base / split / f"urls_{folder}.txt").write_text("http://imdb.example\n" * n)
    unsup = base / "train" / "unsup"
    unsup.mkdir()
    for i in range(n_unsup):
        (unsup / f"{i}_0.txt").write_text(_review(rng, -1, False), encoding="utf-8")
    (base / "README").write_text("Large Movie Review Dataset v1.0 (generated for tests)\n")
    (base / "imdb.vocab").write_text("\n".join(POSITIVE + NEGATIVE + FILLER))
    return root


def tar_imdb(tree_root: Path, archive: Path) -> Path:
    """Pack ``tree_root/aclImdb`` into ``archive`` as the official tarball is packed."""
    import tarfile

    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree_root / "aclImdb", arcname="aclImdb")
    return archive


@pytest.fixture(scope="session")
def tiny_imdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding ``aclImdb/``: 200 train, 100 test and 150 unsup generated reviews."""
    return make_imdb_tree(tmp_path_factory.mktemp("imdb"))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data root with both tiny datasets and ``arrays.npz``, for tests that compose any
    data option."""
    root = tmp_path_factory.mktemp("data")
    make_arrays_npz(root / "arrays.npz")  # data=arrays data.path=arrays.npz
    make_text_table(root / "texts.csv")  # data=text_table data.path=texts.csv
    make_image_folder(root / "images")  # data=image_folder data.root=images
    return make_imdb_tree(make_mnist_tree(root))  # data=text_folder data.root=<root>/aclImdb


# ---------------------------------------------------------------- your own texts
TOPICS = {"music": ("guitar", "song", "album", "melody", "concert"),
          "sport": ("goal", "match", "team", "coach", "league"),
          "weather": ("rain", "storm", "sunny", "wind", "forecast")}


def topic_text(rng: np.random.Generator, topic: str) -> str:
    """3-30 filler words around one to three words of the topic."""
    words = list(rng.choice(FILLER, size=int(rng.integers(3, 30))))
    words += list(rng.choice(TOPICS[topic], size=int(rng.integers(1, 4))))
    rng.shuffle(words)
    return " ".join(words)


def make_text_table(path: Path, per_class: int = 60, seed: int = 0) -> Path:
    """A CSV of short texts on three topics (columns ``text``, ``label``), for text_table."""
    import csv

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(per_class * len(TOPICS)):
            topic = list(TOPICS)[i % len(TOPICS)]
            writer.writerow([topic_text(rng, topic), topic])
    return path


def make_image_folder(root: Path, per_class: int = 80) -> Path:
    """``root/<digit>/<i>.png``: two classes of small synthetic digits, as PNG files."""
    from PIL import Image

    images, labels = synthetic_digits(2 * per_class * 5, 2)
    for digit in (0, 1):
        (root / str(digit)).mkdir(parents=True)
        for i, x in enumerate(images[labels == digit][:per_class]):
            Image.fromarray(x).save(root / str(digit) / f"{i}.png")
    return root


@pytest.fixture
def real_imdb_dir() -> Path:
    """``$DLEXP_DATA_DIR`` when it holds aclImdb_v1.tar.gz or aclImdb/; skips otherwise."""
    root = REAL_DATA
    if not root or not ((Path(root) / "aclImdb_v1.tar.gz").is_file()
                        or (Path(root) / "aclImdb").is_dir()):
        pytest.skip("real IMDB not found: set DLEXP_DATA_DIR to a folder holding "
                    "aclImdb_v1.tar.gz or aclImdb/")
    return Path(root)


# ---------------------------------------------------------------- checkpoints without training
def untrained_checkpoint(path: Path, data_root: Path, overrides: list[str]) -> str:
    """A dlexp checkpoint as train.py writes it (its ``dlexp`` section from the same
    ``checkpoint.extras``, the task's ``state_dict``) of an untrained network, in a second: for
    tests of the input pipeline, where the weights do not matter."""
    import torch
    from hydra.utils import instantiate

    from dlexp import checkpoint
    from dlexp.builders import build_net
    from dlexp.task import ClassificationTask

    cfg = compose_train(overrides, path.parent, data_root)
    info = instantiate(cfg.data).describe()
    torch.manual_seed(0)
    task = ClassificationTask(build_net(cfg.model, info), torch.optim.SGD, info["num_classes"])
    torch.save({"state_dict": task.state_dict(), "dlexp": checkpoint.extras(cfg, info)}, path)
    return str(path)


@pytest.fixture(scope="session")
def untrained_image_ckpt(tmp_path_factory: pytest.TempPathFactory, tiny_mnist: Path) -> str:
    """An MNIST MLP checkpoint (untrained)."""
    path = tmp_path_factory.mktemp("image_ckpt") / "mlp.ckpt"
    return untrained_checkpoint(path, tiny_mnist, ["model=mlp", "model.hidden=[16]",
                                                   "data.val_size=100"])


@pytest.fixture(scope="session")
def untrained_text_ckpt(tmp_path_factory: pytest.TempPathFactory, tiny_imdb: Path) -> str:
    """An IMDB LSTM checkpoint (untrained), keeping 12 tokens per review: the first 3 and
    the last 9 (``truncate=head_tail``)."""
    path = tmp_path_factory.mktemp("text_ckpt") / "lstm.ckpt"
    return untrained_checkpoint(path, tiny_imdb, [
        "data=imdb", "model=lstm", "model.embedding_dim=8", "model.hidden_size=8",
        "data.val_size=40", "data.tokenizer.vocab_size=100", "data.max_len=12",
        "data.truncate=head_tail"])


# ---------------------------------------------------------------- image files
def paper_digit() -> np.ndarray:
    """A dark, anti-aliased stroke on light paper: the values between 0 and 255 matter."""
    paper = np.full((40, 30), 230, np.uint8)
    paper[8:32, 12:18] = 20
    paper[8:32, 11] = paper[8:32, 18] = 120  # grey edges
    return paper


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares its size but holds almost no data: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))
