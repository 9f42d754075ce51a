"""MNISTDataModule on generated IDX files (and, when present, on the real MNIST)."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import make_mnist_tree

from dlexp.data import mnist
from dlexp.data.idx import read_idx, write_idx
from dlexp.data.mnist import MEAN, STD, MNISTDataModule, default_root, normalize
from dlexp.errors import DataError

N_TRAIN, N_TEST = 600, 200


def _dm(root: Path, **kwargs) -> MNISTDataModule:
    kwargs = {"download": False, "val_size": 100, "batch_size": 32, "eval_batch_size": 50,
              **kwargs}
    dm = MNISTDataModule(root=str(root), **kwargs)
    dm.setup("fit")
    return dm


def _raw(root: Path, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    raw = root / "MNIST" / "raw"
    return (read_idx(raw / f"{prefix}-images-idx3-ubyte.gz", 2051),
            read_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", 2049).long())


def test_shapes_and_dtypes(tiny_mnist: Path) -> None:
    dm = _dm(tiny_mnist)
    for (x, y), n in ((dm.train_set, 500), (dm.val_set, 100), (dm.test_set, N_TEST)):
        assert x.shape == (n, 1, 28, 28) and x.dtype == torch.uint8
        assert y.shape == (n,) and y.dtype == torch.int64
    assert len(dm.unlabeled_set[0]) == 0
    assert dm.num_classes == 10 and dm.class_names == [str(c) for c in range(10)]
    assert dm.net_kwargs() == {"in_shape": [1, 28, 28], "num_classes": 10}
    info = dm.describe()
    assert info["mean"] == MEAN and info["std"] == STD and info["num_classes"] == 10


def test_sets_hold_the_file_contents(tiny_mnist: Path) -> None:
    dm = _dm(tiny_mnist)
    x, y = _raw(tiny_mnist, "train")
    idx = dm.split_indices
    assert torch.equal(dm.train_set[0][:, 0], x[idx["train"]])
    assert torch.equal(dm.val_set[1], y[idx["val"]])
    tx, ty = _raw(tiny_mnist, "t10k")
    assert torch.equal(dm.test_set[0][:, 0], tx) and torch.equal(dm.test_set[1], ty)


def test_batches_are_uint8_until_normalised(tiny_mnist: Path) -> None:
    dm = _dm(tiny_mnist)
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (32, 1, 28, 28) and y.dtype == torch.int64
    xn, yn = dm.on_after_batch_transfer((x, y), 0)
    assert xn.dtype == torch.float32 and xn.shape == x.shape and torch.equal(yn, y)
    torch.testing.assert_close(xn, (x.float() / 255 - MEAN) / STD)
    assert xn.min() == pytest.approx(-MEAN / STD, abs=1e-5)
    assert x.dtype == torch.uint8  # the input batch is left alone


@pytest.mark.parametrize(("option", "expected"), [
    ("unit", lambda x: x / 255),   # Keras tutorials' x / 255
    ("none", lambda x: x),         # the course: raw 0..255
])
def test_normalize_options(option: str, expected, tiny_mnist: Path) -> None:
    dm = _dm(tiny_mnist, normalize=option)
    x, y = next(iter(dm.train_dataloader()))
    xn, _ = dm.on_after_batch_transfer((x, y), 0)
    torch.testing.assert_close(xn, expected(x.float()))
    info = dm.describe()  # predict.py rebuilds the inputs from these: (x/255 - mean) / std
    torch.testing.assert_close((x.float() / 255 - info["mean"]) / info["std"], xn)
    with pytest.raises(ValueError, match="data.normalize must be one of standard, unit, none"):
        MNISTDataModule(root=str(tiny_mnist), normalize="minmax")


def test_normalize_never_modifies_its_input() -> None:
    x = torch.full((2, 1, 4, 4), 255.0)
    out = normalize(x)
    assert torch.equal(x, torch.full_like(x, 255.0))
    torch.testing.assert_close(out, torch.full_like(x, (1 - MEAN) / STD))


def test_whole_training_set_normalises_to_about_standard(tiny_mnist: Path) -> None:
    dm = _dm(tiny_mnist)
    xn = normalize(dm.train_set[0])
    # synthetic digits are brighter than MNIST, but the scale must be right
    assert -1 < xn.mean().item() < 2 and 0.5 < xn.std().item() < 2


def test_a_label_outside_the_digits_is_refused_when_read(tmp_path: Path) -> None:
    root = make_mnist_tree(tmp_path, n_train=50, n_test=20)
    labels = root / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    y = read_idx(labels, 2049).numpy().copy()
    y[7] = 200
    write_idx(labels, y)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz holds label 200 at "
                                        r"position 7, outside the digits 0-9"):
        _dm(root, val_size=10)


def test_loaders(tiny_mnist: Path) -> None:
    dm = _dm(tiny_mnist)
    train, val, test = dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()
    assert len(train) == 16 and len(val) == 2 and len(test) == 4
    assert train.sampler.shuffle and not val.sampler.shuffle and not test.sampler.shuffle
    assert torch.equal(torch.cat([y for _, y in val]), dm.val_set[1])
    assert sorted(torch.cat([y for _, y in train]).tolist()) == sorted(dm.train_set[1].tolist())
    assert len(dm.unlabeled_dataloader()) == 0


def test_splits_never_overlap(tiny_mnist: Path) -> None:
    dm = _dm(tiny_mnist)
    train, val = (set(dm.split_indices[k].tolist()) for k in ("train", "val"))
    assert len(train) == 500 and len(val) == 100
    assert train.isdisjoint(val) and train | val == set(range(N_TRAIN))
    # the test set is the separate t10k file: no test image is a train/val image
    tx = {bytes(t.numpy()) for t in dm.test_set[0]}
    assert tx.isdisjoint(bytes(t.numpy()) for t in dm.train_set[0])
    assert tx.isdisjoint(bytes(t.numpy()) for t in dm.val_set[0])


def test_split_is_seeded(tiny_mnist: Path) -> None:
    a, b, c = _dm(tiny_mnist, seed=0), _dm(tiny_mnist, seed=0), _dm(tiny_mnist, seed=1)
    for k in ("train", "val"):
        assert torch.equal(a.split_indices[k], b.split_indices[k])
    assert not torch.equal(a.split_indices["val"], c.split_indices["val"])
    assert torch.equal(a.val_set[0], b.val_set[0])


def test_val_is_not_the_tail(tiny_mnist: Path) -> None:
    val = _dm(tiny_mnist).split_indices["val"]
    assert not torch.equal(val, torch.arange(500, 600))


def test_val_size_fraction(tiny_mnist: Path) -> None:
    dm = _dm(tiny_mnist, val_size=0.2)
    assert len(dm.val_set[1]) == 120 and len(dm.train_set[1]) == 480


def test_val_size_too_large(tiny_mnist: Path) -> None:
    with pytest.raises(DataError, match="data.val_size"):
        _dm(tiny_mnist, val_size=5000)  # the default is for the real 60k


def test_setup_is_idempotent(tiny_mnist: Path) -> None:
    dm = _dm(tiny_mnist)
    first = dm.train_set
    dm.setup("test")
    assert dm.train_set is first


def test_num_labeled_is_stratified_and_rest_is_unlabeled(tiny_mnist: Path) -> None:
    full = _dm(tiny_mnist)
    dm = _dm(tiny_mnist, num_labeled=50)
    assert len(dm.train_set[1]) == 50
    assert torch.bincount(dm.train_set[1], minlength=10).tolist() == [5] * 10
    lab, unl = dm.split_indices["train"], dm.split_indices["unlabeled"]
    assert len(unl) == 450 and len(dm.unlabeled_set[0]) == 450
    assert set(lab.tolist()).isdisjoint(unl.tolist())
    assert sorted(lab.tolist() + unl.tolist()) == full.split_indices["train"].tolist()
    assert torch.equal(dm.split_indices["val"], full.split_indices["val"])
    assert len(dm.unlabeled_dataloader()) == 9
    assert torch.equal(dm.class_counts(), torch.full((10,), 5))


@pytest.mark.parametrize("n", [0, 9, 501])
def test_num_labeled_out_of_range(tiny_mnist: Path, n: int) -> None:
    with pytest.raises(DataError, match=r"data.num_labeled must be in \[10, 500\] \(at least one label per class\)"):
        _dm(tiny_mnist, num_labeled=n)


def test_class_subset_relabels(tiny_mnist: Path) -> None:
    dm = _dm(tiny_mnist, classes=[0, 1, 2, 3, 4], val_size=50)
    assert dm.num_classes == 5 and dm.class_names == ["0", "1", "2", "3", "4"]
    assert dm.net_kwargs()["num_classes"] == 5
    assert len(dm.train_set[1]) + len(dm.val_set[1]) == 300
    assert len(dm.test_set[1]) == 100
    for _, y in (dm.train_set, dm.val_set, dm.test_set):
        assert set(y.tolist()) == {0, 1, 2, 3, 4}


def test_class_subset_maps_to_the_right_images(tiny_mnist: Path) -> None:
    dm = _dm(tiny_mnist, classes=[7, 3], val_size=10)
    assert dm.class_names == ["3", "7"]
    tx, ty = _raw(tiny_mnist, "t10k")
    x, y = dm.test_set
    assert torch.equal(x[y == 0][:, 0], tx[ty == 3])
    assert torch.equal(x[y == 1][:, 0], tx[ty == 7])


@pytest.mark.parametrize("classes", [[], [10], [-1, 2], [1, 1]])
def test_bad_classes(classes: list[int]) -> None:
    with pytest.raises(ValueError, match="data.classes must be distinct digits 0-9"):
        MNISTDataModule(root="unused", classes=classes)


def test_imbalance_reduces_counts(tiny_mnist: Path) -> None:
    full = _dm(tiny_mnist)
    dm = _dm(tiny_mnist, imbalance=0.1)
    before, after = full.class_counts(), dm.class_counts()
    assert after[0] == before[0]
    assert after[-1] == max(1, round(0.1 * before[-1].item()))
    assert (after[1:] <= before[1:]).all() and after.sum() < before.sum() * 0.6
    assert set(dm.split_indices["train"].tolist()) < set(full.split_indices["train"].tolist())
    assert torch.equal(dm.split_indices["val"], full.split_indices["val"])  # val stays as is


def test_uncompressed_files(tmp_path: Path) -> None:
    make_mnist_tree(tmp_path, n_train=50, n_test=20, gz=False)
    dm = _dm(tmp_path, val_size=10)
    assert len(dm.train_set[1]) == 40 and len(dm.test_set[1]) == 20


def test_missing_files_without_download(tmp_path: Path) -> None:
    dm = MNISTDataModule(root=str(tmp_path), download=False, val_size=10)
    with pytest.raises(DataError) as err:
        dm.setup("fit")
    msg = str(err.value)
    assert str((tmp_path / "MNIST" / "raw").resolve()) in msg
    assert "data.download=false" in msg and "train-images-idx3-ubyte" in msg
    assert "DLEXP_DATA_DIR" in msg


def test_one_missing_file_is_named(tmp_path: Path) -> None:
    make_mnist_tree(tmp_path, n_train=20, n_test=10)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte") as err:
        MNISTDataModule(root=str(tmp_path), download=False).prepare_data()
    assert "train-images" not in str(err.value)


def test_download_without_network(offline: list[str], tmp_path: Path) -> None:
    tried = offline
    dm = MNISTDataModule(root=str(tmp_path), download=True, val_size=10)
    with pytest.raises(DataError) as err:
        dm.prepare_data()
    msg = str(err.value)
    assert str(dm.raw_dir.resolve()) in msg and "Network is unreachable" in msg
    assert tried and all(u.startswith(("https://", "http://")) for u in tried)
    assert list(dm.raw_dir.glob("*")) == []  # no .part file left behind
    with pytest.raises(DataError):
        dm.setup("fit")  # setup explains the same way


def test_no_download_when_files_exist(offline: list[str], tiny_mnist: Path) -> None:
    tried = offline
    dm = MNISTDataModule(root=str(tiny_mnist), download=True, val_size=100)
    dm.prepare_data()
    dm.setup()
    assert tried == [] and len(dm.train_set[1]) == 500


def test_download_from_a_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = make_mnist_tree(tmp_path / "mirror", n_train=30, n_test=10) / "MNIST" / "raw"
    files = {name: (hashlib.md5((mirror / f"{name}.gz").read_bytes()).hexdigest(), magic)
             for name, (_, magic) in mnist.FILES.items()}
    monkeypatch.setattr(mnist, "FILES", files)
    monkeypatch.setattr(mnist, "MIRRORS", ("file:///nonexistent/", mirror.as_uri() + "/"))
    dm = MNISTDataModule(root=str(tmp_path / "data"), download=True, val_size=5)
    dm.prepare_data()
    assert sorted(p.name for p in dm.raw_dir.iterdir()) == sorted(f"{n}.gz" for n in files)
    dm.setup()
    assert len(dm.train_set[1]) == 25 and len(dm.test_set[1]) == 10


def test_download_checksum_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = make_mnist_tree(tmp_path / "mirror", n_train=10, n_test=10) / "MNIST" / "raw"
    monkeypatch.setattr(mnist, "MIRRORS", (mirror.as_uri() + "/",))  # md5s are the real ones
    dm = MNISTDataModule(root=str(tmp_path / "data"), download=True)
    with pytest.raises(DataError, match="md5 mismatch"):
        dm.prepare_data()
    assert list(dm.raw_dir.iterdir()) == []


def _copy_tree(tiny_mnist: Path, tmp_path: Path) -> Path:
    shutil.copytree(tiny_mnist / "MNIST", tmp_path / "MNIST")
    return tmp_path / "MNIST" / "raw"


def test_corrupt_file(tiny_mnist: Path, tmp_path: Path) -> None:
    raw = _copy_tree(tiny_mnist, tmp_path)
    bad = raw / "train-images-idx3-ubyte.gz"
    bad.write_bytes(b"\x1f\x8b" + b"garbage" * 100)
    with pytest.raises(DataError) as err:
        _dm(tmp_path)
    assert str(bad) in str(err.value)


def test_truncated_file(tiny_mnist: Path, tmp_path: Path) -> None:
    raw = _copy_tree(tiny_mnist, tmp_path)
    path = raw / "t10k-images-idx3-ubyte.gz"
    full = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(full[: len(full) - 28 * 28 // 2]))
    with pytest.raises(DataError, match="truncated or corrupt") as err:
        _dm(tmp_path)
    assert str(path) in str(err.value)


def test_swapped_files(tiny_mnist: Path, tmp_path: Path) -> None:
    raw = _copy_tree(tiny_mnist, tmp_path)
    labels = raw / "train-labels-idx1-ubyte.gz"
    shutil.copy(raw / "train-images-idx3-ubyte.gz", labels)
    with pytest.raises(DataError, match="magic number 2051, expected 2049"):
        _dm(tmp_path)


def test_images_and_labels_disagree(tiny_mnist: Path, tmp_path: Path) -> None:
    raw = _copy_tree(tiny_mnist, tmp_path)
    write_idx(raw / "train-labels-idx1-ubyte.gz", torch.zeros(599, dtype=torch.uint8).numpy())
    with pytest.raises(DataError, match="has 600 images but .* has 599 labels"):
        _dm(tmp_path)


def test_default_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DLEXP_DATA_DIR", str(tmp_path))
    assert default_root() == str(tmp_path)
    assert MNISTDataModule().root == tmp_path
    monkeypatch.delenv("DLEXP_DATA_DIR")
    assert default_root() == "data"


def _fake_trainer(training: bool) -> SimpleNamespace:
    return SimpleNamespace(training=training, global_rank=0, world_size=1)


def test_augment_only_while_training(tiny_mnist: Path) -> None:
    dm = _dm(tiny_mnist, augment=True)
    x, y = dm.train_set[0][:16], dm.train_set[1][:16]
    plain = normalize(x)
    dm.trainer = _fake_trainer(training=False)
    assert torch.equal(dm.on_after_batch_transfer((x, y), 0)[0], plain)
    dm.trainer = _fake_trainer(training=True)
    out, yo = dm.on_after_batch_transfer((x, y), 0)
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.equal(yo, y)
    assert not torch.allclose(out, plain)
    off = _dm(tiny_mnist, augment=False)
    off.trainer = _fake_trainer(training=True)
    assert torch.equal(off.on_after_batch_transfer((x, y), 0)[0], plain)


def test_augment_fills_borders_with_black(tiny_mnist: Path) -> None:
    """Pixels shifted in must look like MNIST's background (0), not the mean grey."""
    dm = _dm(tiny_mnist, augment=True, max_shift=0.2, max_degrees=0.0)
    dm.trainer = _fake_trainer(training=True)
    white = torch.full((16, 1, 28, 28), 255, dtype=torch.uint8)
    out, _ = dm.on_after_batch_transfer((white, torch.zeros(16)), 0)
    black, full = -MEAN / STD, (1 - MEAN) / STD
    assert out.min().item() == pytest.approx(black, abs=1e-4)
    assert out.max().item() == pytest.approx(full, abs=1e-4)


def test_loaders_shard_by_trainer_rank(tiny_mnist: Path) -> None:
    dm = _dm(tiny_mnist)
    parts = []
    for rank in (0, 1):
        dm.trainer = SimpleNamespace(training=True, global_rank=rank, world_size=2,
                                     strategy=SimpleNamespace(root_device=torch.device("cpu")))
        parts.append(torch.cat([y for _, y in dm.val_dataloader()]))
    assert len(parts[0]) == len(parts[1]) == 50


MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_mnist(real_data_dir: Path) -> None:
    dm = MNISTDataModule(root=str(real_data_dir), download=False, val_size=0)
    dm.setup()
    x, y = dm.train_set
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.uint8
    assert torch.bincount(y, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    tx, ty = dm.test_set
    assert tx.shape == (10000, 1, 28, 28)
    assert torch.bincount(ty, minlength=10).tolist() == MNIST_TEST_COUNTS
    # the published statistics the pipeline standardises with
    assert x.float().div(255).mean().item() == pytest.approx(MEAN, abs=1e-4)
    assert x.float().div(255).std().item() == pytest.approx(STD, abs=1e-3)
    split = MNISTDataModule(root=str(real_data_dir), download=False)  # default val_size 5000
    split.setup()
    assert len(split.train_set[1]) == 55000 and len(split.val_set[1]) == 5000


@pytest.mark.parametrize(("on_device", "moved"), [(True, True), ("auto", False), (False, False)])
def test_on_device_keeps_the_data_where_the_trainer_trains(on_device, moved: bool,
                                                           tiny_mnist: Path) -> None:
    """On CPU the device is the host, so the same path runs here as on a GPU; auto keeps the
    data in host memory unless the accelerator is a GPU."""
    dm = _dm(tiny_mnist, on_device=on_device)
    root = torch.device("cpu")
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=root), global_rank=0,
                                 world_size=1, training=False)
    assert (dm.data_device(dm.train_set) == root) is moved
    loader = dm.train_dataloader()
    x, y = next(iter(loader))
    assert x.dtype == torch.uint8 and x.device == loader.tensors[0].device
    assert torch.equal(torch.sort(torch.cat([b[1] for b in loader])).values,
                       torch.sort(dm.train_set[1]).values)  # every sample once


def test_on_device_values() -> None:
    with pytest.raises(ValueError, match="data.on_device must be one of auto, true, false"):
        MNISTDataModule(on_device="gpu")
