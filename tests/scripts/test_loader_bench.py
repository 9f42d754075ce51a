"""scripts/loader_bench.py writes its folders and times both loaders on a tiny one (the
measurements themselves belong to the script, never to timed tests)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

spec = importlib.util.spec_from_file_location("loader_bench", REPO / "scripts" / "loader_bench.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 small gray PNGs, 3 classes of 20."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(60):
        (root / f"c{i % 3}").mkdir(exist_ok=True)
        pixels = rng.integers(0, 256, (12, 12), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"c{i % 3}" / f"{i}.png")
    return root


def test_rgb_make_writes_class_folders_of_mixed_images(tmp_path: Path) -> None:
    out = tmp_path / "rgb"
    assert bench.main(["--make", str(out), "--source", "rgb", "--n", "12"]) == 0
    files = sorted(out.rglob("*.*"))
    assert len(files) == 12
    assert {f.parent.name for f in files} == {f"class{k}" for k in range(bench.RGB_CLASSES)}
    assert {f.suffix for f in files} == {".jpg", ".png"}
    images = [Image.open(f) for f in files]
    assert {im.mode for im in images} == {"RGB"}
    assert len({im.size for im in images}) > 1


def test_mnist_make_writes_digits_from_the_idx_files(tmp_path: Path, tiny_mnist: Path) -> None:
    out = tmp_path / "mnist"
    assert bench.main(["--make", str(out), "--source", "mnist", "--n", "30",
                       "--data-dir", str(tiny_mnist)]) == 0
    files = list(out.rglob("*.png"))
    assert len(files) == 30 and {f.parent.name for f in files} <= {str(d) for d in range(10)}
    assert Image.open(files[0]).size == (28, 28)


def test_bad_requests_get_one_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert bench.main(["--make", str(tmp_path / "m"), "--data-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: no train-images-idx3-ubyte")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    assert bench.main(["--make", str(tmp_path / "full"), "--source", "rgb"]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert bench.main([]) == 2
    assert "give the image folder" in capsys.readouterr().err
    assert bench.main([str(tmp_path), "--batch-size", "0"]) == 2
    assert "--batch-size >= 1, got 2 and 0" in capsys.readouterr().err


def test_both_loaders_are_timed_on_the_same_images(tiny_folder: Path, tmp_path: Path) -> None:
    record = bench.run(tiny_folder, workers=0, batch_size=16, work_dir=tmp_path)
    assert record["images"] == 60 and record["image_shape"] == [1, 12, 12]  # the module's pick
    assert all(rate > 0 and math.isfinite(rate) for rate in record["images_per_s"].values())
    assert all(s >= 0 for s in record["seconds"].values())
    assert all(0 < r < 1e4 for r in record["ratio"].values())
    assert record["ratio"]["cached_epoch"] == pytest.approx(
        record["images_per_s"]["cached_epoch"] / record["images_per_s"]["anchor"])
    rss = record["peak_rss_mb"]
    assert rss["module_process"] >= rss["before_module"] > 0
    assert not list(tmp_path.iterdir())  # the fresh cache dirs are gone


def test_json_holds_the_record(tiny_folder: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "loader.json"
    assert bench.main([str(tiny_folder), "--workers", "0", "--batch-size", "32", "--size", "8",
                       "10", "--channels", "3", "--work-dir", str(tmp_path),
                       "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert set(record) >= {"images", "image_shape", "seconds", "images_per_s", "ratio",
                           "peak_rss_mb", "meta"}
    assert record["image_shape"] == [3, 8, 10]
    assert set(record["ratio"]) == {"first_epoch", "cached_epoch", "later_run"}
    assert "| image_folder: cached epoch |" in capsys.readouterr().out
