"""data.sampler=balanced: training epochs that draw every class equally often (with replacement,
the epoch's length), seeded by (seed, epoch) as the default order is, for every data group that
batches through EpochSampler; the default order unchanged; a weighted loss refused beside it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TOPICS, compose_train, topic_text
from PIL import Image

from dlexp import config
from dlexp.data.image_folder import ImageFolderDataModule
from dlexp.data.mnist import MNISTDataModule
from dlexp.data.tensor_loader import EpochSampler, balanced_weights
from dlexp.data.text import TextTableDataModule
from dlexp.data.text_loader import TextBatchLoader
from dlexp.data.token_store import TokenStore, offsets_of
from dlexp.errors import ConfigError

COUNTS = [900, 90, 10]  # 90:9:1
TOLERANCE = 0.05  # on a share of 1/3 from 3000 seeded draws (its sd is ~0.009)


def _labels(counts: list[int] = COUNTS) -> torch.Tensor:
    return torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])


def _shares(labels: torch.Tensor, classes: int) -> list[float]:
    return (torch.bincount(labels, minlength=classes).double() / len(labels)).tolist()


def _balanced(n: int, labels: torch.Tensor, **kwargs) -> EpochSampler:
    sampler = EpochSampler(n, shuffle=True, **kwargs)
    sampler.weights = balanced_weights(labels)
    return sampler


def _epoch_labels(loader, epochs: int = 1) -> torch.Tensor:
    """The labels a training loader (or a datamodule's) serves over ``epochs`` epochs."""
    loader = loader.train_dataloader() if hasattr(loader, "train_dataloader") else loader
    out = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        out += [batch[-1] for batch in loader]
    return torch.cat(out)


def test_balanced_weights_are_one_over_the_class_count() -> None:
    w = balanced_weights(torch.tensor([0, 0, 0, 1, 2, 2]))
    torch.testing.assert_close(w, torch.tensor([1 / 3] * 3 + [1.0] + [0.5] * 2,
                                               dtype=torch.float64))


def test_classes_are_drawn_equally_often_and_reproducibly() -> None:
    y = _labels()
    sampler = _balanced(len(y), y, seed=3)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        idx = sampler.indices()
        assert len(idx) == len(y) and int(idx.min()) >= 0 and int(idx.max()) < len(y)
        epochs.append(idx)
    shares = _shares(y[torch.cat(epochs)], 3)
    assert all(abs(s - 1 / 3) < TOLERANCE for s in shares), shares
    assert len(torch.unique(epochs[0])) < len(y)  # with replacement: the small class repeats
    assert not torch.equal(epochs[0], epochs[1])
    again = _balanced(len(y), y, seed=3)
    again.set_epoch(1)  # a resumed run: the same draws for the same seed and epoch
    assert torch.equal(again.indices(), epochs[1])
    assert not torch.equal(_balanced(len(y), y, seed=4).indices(), epochs[0])


def test_the_default_order_is_unchanged() -> None:
    """Bit for bit the permutation dlexp drew before samplers existed."""
    for seed, epoch in ((0, 0), (7, 3)):
        sampler = EpochSampler(50, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        before = torch.randperm(50, generator=torch.Generator().manual_seed(
            seed * 100_003 + epoch))
        assert torch.equal(sampler.indices(), before)


def test_ranks_shard_one_balanced_draw() -> None:
    y = _labels([30, 6, 4])
    whole = _balanced(len(y), y, seed=1).indices()
    halves = [_balanced(len(y), y, seed=1, rank=r, world_size=2).indices() for r in (0, 1)]
    assert torch.equal(torch.stack(halves, 1).flatten(), whole)


def test_the_text_loader_draws_balanced_batches() -> None:
    y = _labels([60, 12, 3])
    lengths = torch.tensor([2 + i % 7 for i in range(len(y))])
    store = TokenStore(torch.ones(int(lengths.sum()), dtype=torch.int32), offsets_of(lengths))
    loader = TextBatchLoader(store, y, batch_size=8, shuffle=True, seed=0)
    loader.sampler.weights = balanced_weights(y)
    drawn = _epoch_labels(loader, epochs=20)
    assert len(drawn) == 20 * len(y)
    assert all(abs(s - 1 / 3) < TOLERANCE for s in _shares(drawn, 3))


def test_mnist_with_an_imbalance_profile(tiny_mnist: Path) -> None:
    options = {"root": str(tiny_mnist), "download": False, "val_size": 100,
               "imbalance": 0.1, "seed": 0, "batch_size": 50, "on_device": False}
    plain, balanced = (MNISTDataModule(**options, sampler=s) for s in (None, "balanced"))
    plain.setup(), balanced.setup()
    counts = plain.class_counts()
    assert counts.max() >= 5 * counts.min()
    assert sorted(_epoch_labels(plain).tolist()) == sorted(plain.train_set[1].tolist())
    drawn = _epoch_labels(balanced, epochs=10)
    assert len(drawn) == 10 * int(counts.sum())
    assert all(abs(s - 0.1) < 0.03 for s in _shares(drawn, 10)), _shares(drawn, 10)


def test_image_folder_balanced(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name, n in (("common", 40), ("rare", 5)):
        (tmp_path / "pics" / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).save(
                tmp_path / "pics" / name / f"{i}.png")
    dm = ImageFolderDataModule(str(tmp_path / "pics"), cache_dir=str(tmp_path / "cache"),
                               val_size=0, test_size=4, workers=0, batch_size=9,
                               sampler="balanced", on_device=False)
    dm.setup()
    assert dm.class_counts().tolist() == [36, 5]
    drawn = _epoch_labels(dm, epochs=40)
    assert len(drawn) == 40 * 41
    assert all(abs(s - 0.5) < TOLERANCE for s in _shares(drawn, 2))


def test_text_table_balanced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(0)
    with open(tmp_path / "t.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for topic, n in zip(TOPICS, (60, 12, 4), strict=True):
            writer.writerows([topic_text(rng, topic), topic] for _ in range(n))
    dm = TextTableDataModule(path=str(tmp_path / "t.csv"), cache_dir=str(tmp_path / "cache"),
                             val_size=0, test_size=6, batch_size=8, sampler="balanced",
                             tokenizer={"vocab_size": 100, "min_frequency": 1})
    dm.setup()
    assert "loss=weighted_cross_entropy" in caplog.text  # the imbalance warning names both
    assert "data.sampler=balanced" in caplog.text
    assert dm.class_counts().tolist() == [55, 11, 4]  # music, sport, weather: test took 6
    drawn = _epoch_labels(dm, epochs=30)
    assert len(drawn) == 30 * 70
    assert all(abs(s - 1 / 3) < TOLERANCE for s in _shares(drawn, 3))


def test_a_bad_choice_and_a_weighted_loss_beside_it_are_refused(tiny_mnist: Path,
                                                                tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="data.sampler must be one of null, balanced, got 'even'"):
        MNISTDataModule(root=str(tiny_mnist), sampler="even")
    cfg = compose_train(["data.sampler=balanced", "loss=weighted_cross_entropy"], tmp_path)
    with pytest.raises(ConfigError, match="data.sampler=balanced already evens out the classes"):
        config.check_sampler(cfg)
    config.check_sampler(compose_train(["data.sampler=balanced"], tmp_path))
    cfg = compose_train(["data=imdb", "model=lstm", "method=language_model",
                         "data.sampler=balanced"], tmp_path)
    with pytest.raises(ConfigError, match="method=language_model serves its own unlabeled"):
        config.check_sampler(cfg)
    for data in ("image_folder", "text_table", "text_folder", "arrays", "imdb"):
        assert compose_train([f"data={data}"], tmp_path).data.sampler is None
