"""data=arrays: your own .npz arrays, checked, split and described for the checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DIGIT_NAMES, make_arrays_npz, synthetic_digits

from dlexp.builders import build_net
from dlexp.data.arrays import ArraysDataModule
from dlexp.errors import DataError
from dlexp.inputs import load_sample, normalize_images


def module(path: Path, **kwargs) -> ArraysDataModule:
    return ArraysDataModule(str(path), **{"val_size": 0.2, "test_size": 0.2, **kwargs})


def test_string_labels_become_sorted_classes_and_stratified_splits(tiny_arrays: Path) -> None:
    dm = module(tiny_arrays)
    info = dm.describe()
    assert info["class_names"] == sorted(DIGIT_NAMES.tolist())  # "eight", "five", ...
    assert info["net_kwargs"] == {"in_shape": [1, 28, 28], "num_classes": 10}
    sizes = [len(dm.train_set[1]), len(dm.val_set[1]), len(dm.test_set[1])]
    assert sizes == [180, 60, 60]  # 300 = 60% + 20% + 20%
    for part in (dm.val_set, dm.test_set):  # 30 per class in the file: 6 each held out
        assert torch.bincount(part[1], minlength=10).tolist() == [6] * 10
    held = torch.cat([dm.split_indices["val"], dm.split_indices["test"]])
    assert len(set(held.tolist()) | set(dm.split_indices["train"].tolist())) == 300
    # the statistics are the training split's, on the arrays' own 0-255 scale
    train_x = dm.train_set[0].float()
    assert info["mean"] == pytest.approx([train_x.mean().item()], rel=1e-5)
    assert info["std"] == pytest.approx([train_x.std(unbiased=False).item()], rel=1e-4)
    # labels map to the names: sample i of the file is still its class
    x, y = synthetic_digits(300, 0)
    i = int(dm.split_indices["train"][0])
    assert dm.class_names[int(dm.train_set[1][0])] == DIGIT_NAMES[y[i]]
    assert torch.equal(dm.train_set[0][0, 0], torch.from_numpy(x[i]))


def test_splits_follow_the_seed(tiny_arrays: Path) -> None:
    a, b, c = module(tiny_arrays, seed=1), module(tiny_arrays, seed=1), module(tiny_arrays)
    assert torch.equal(a.split_indices["val"], b.split_indices["val"])
    assert not torch.equal(a.split_indices["val"], c.split_indices["val"])


def test_given_parts_are_used_as_they_are(tmp_path: Path) -> None:
    path = make_arrays_npz(tmp_path / "d.npz", n_train=200, n_test=50, names=False)
    dm = module(path, val_size=40)
    assert len(dm.test_set[1]) == 50 and len(dm.train_set[1]) == 160
    assert dm.class_names == [str(i) for i in range(10)]  # numbers sorted by value


def test_color_images_channels_last_and_features(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = np.zeros((40, 8, 6, 3), np.float32)
    x[..., 1], x[..., 2] = 10.0, rng.normal(size=(40, 8, 6))
    np.savez(tmp_path / "rgb.npz", x_train=x, y_train=np.arange(40) % 2)
    dm = module(tmp_path / "rgb.npz")
    info = dm.describe()
    assert info["net_kwargs"]["in_shape"] == [3, 8, 6] and info["channels"] == 3
    assert info["mean"][:2] == pytest.approx([0.0, 10.0])
    assert info["std"][:2] == [1.0, 1.0]  # constant channels are centred, not divided by 0
    net = build_net({"_target_": "dlexp.models.cnn.CNN", "blocks": [{"filters": 4}],
                     "dense": [8]}, info)
    batch = dm._normalize(dm.train_set[0][:4])
    assert net(batch).shape == (4, 2) and batch[:, 1].abs().max() == 0

    np.savez(tmp_path / "f.npz", x_train=rng.normal(5, 2, size=(60, 7)),
             y_train=np.array(["a", "b", "c"])[np.arange(60) % 3])
    dm = module(tmp_path / "f.npz")
    info = dm.describe()
    assert info["modality"] == "features" and info["net_kwargs"]["in_shape"] == [7]
    assert len(info["mean"]) == 7  # per feature
    x = dm._normalize(dm.train_set[0])
    assert x.mean(0).abs().max() < 1e-4 and (x.std(0, unbiased=False) - 1).abs().max() < 1e-3


def test_an_input_for_prediction_goes_through_the_training_pipeline(tiny_arrays: Path) -> None:
    dm = module(tiny_arrays)
    info = dm.describe()
    x, _ = synthetic_digits(3, 5)
    from_array = normalize_images([load_sample(x[0], info)], info)
    expected = dm._normalize(torch.from_numpy(x[:1]).unsqueeze(1))
    assert torch.allclose(from_array, expected)
    with pytest.raises(ValueError, match=r"does not fit this model"):
        load_sample(np.zeros((27, 28)), info)


def bad_files() -> list[tuple[dict, str]]:
    x, y = synthetic_digits(20, 0)
    nan = x.astype(np.float32)
    nan[3, 0, 0] = np.nan
    return [
        ({"x_train": x}, "y_train is missing"),
        ({"x_train": x, "y_train": y[:-1]}, "x_train has 20 samples but y_train has 19"),
        ({"x_train": x, "y_train": np.zeros(20, int)}, "holds one class"),
        ({"x_train": x, "y_train": y, "x_test": x[:2], "y_test": np.array([1, 12])},
         "y_test holds label 12, which y_train does not have"),
        ({"x_train": nan, "y_train": y}, r"x_train holds NaN or infinite values \(first in "
                                         r"sample 3\)"),
        ({"x_train": x[:, 0, 0], "y_train": y}, r"x_train has shape \(20,\)"),
        ({"x_train": x, "y_train": np.eye(10)[y]}, "not one-hot"),
        ({"X_train": x, "y_train": y}, "unknown arrays X_train"),
        ({"x_train": x, "y_train": y, "x_val": x[:, :20], "y_val": y},
         r"x_val samples have shape \(20, 28\), x_train's have \(28, 28\)"),
        ({"x_train": x, "y_train": y + 0.5}, "not whole numbers"),
    ]


@pytest.mark.parametrize(("arrays", "message"), bad_files(), ids=lambda v: str(v)[:30])
def test_bad_arrays_are_named(arrays: dict, message: str, tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        module(tmp_path / "bad.npz")


def test_pickled_objects_and_missing_files_are_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "obj.npz", x_train=np.array([{"a": 1}] * 4, dtype=object),
             y_train=np.arange(4) % 2)
    with pytest.raises(DataError, match="holds Python objects"):
        module(tmp_path / "obj.npz")
    with pytest.raises(DataError, match="no such file"):
        module(tmp_path / "nothing.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(DataError, match="cannot read"):
        module(tmp_path / "text.npz")


def test_a_relative_path_is_found_in_the_data_folder(tiny_arrays: Path) -> None:
    dm = ArraysDataModule(tiny_arrays.name, root=str(tiny_arrays.parent))
    assert dm.path == str(tiny_arrays.resolve())


def test_stratified_split_keeps_small_classes_in_training() -> None:
    from dlexp.data.splits import stratified_split

    labels = torch.tensor([0] * 90 + [1] * 9 + [2])
    kept, out = stratified_split(labels, 10, seed=0)
    assert torch.bincount(labels[out], minlength=3).tolist() == [9, 1, 0]
    assert len(kept) + len(out) == 100 and (labels[kept] == 2).sum() == 1
