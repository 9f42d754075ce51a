"""Shared fixtures: tiny generated datasets so every test runs anywhere, offline."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dlexp.data.idx import write_idx

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = str(REPO / "conf")


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


@pytest.fixture
def real_data_dir() -> Path:
    """``$DLEXP_DATA_DIR`` when it holds the real MNIST files; skips the test otherwise."""
    root = os.environ.get("DLEXP_DATA_DIR")
    if not root or not (Path(root) / "MNIST" / "raw").is_dir():
        pytest.skip("real MNIST not found: set DLEXP_DATA_DIR to a folder holding MNIST/raw/")
    return Path(root)


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
