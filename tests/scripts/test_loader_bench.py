"""scripts/loader_bench.py writes its folders and times both loaders on a tiny one (the
measurements themselves belong to the script, never to timed tests)."""

from __future__ import annotations

import json
import math
import mmap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import script_module
from PIL import Image

bench = script_module("loader_bench")


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


# ---------------------------------------------------------------- the MNIST split folders
def test_mnist_folder_exports_train_and_test_once(tmp_path: Path, tiny_mnist: Path) -> None:
    out = tmp_path / "pngs"
    assert bench.mnist_folder(out, tiny_mnist, workers=2) == out
    for split, n in (("train", 600), ("test", 200)):
        files = list((out / split).rglob("*.png"))
        assert len(files) == n and {f.parent.name for f in files} == {str(d) for d in range(10)}
    x, y = bench.mnist_part(tiny_mnist, *bench.MNIST_FILES[1])
    assert np.array_equal(np.asarray(Image.open(out / "test" / str(y[7]) / "7.png")), x[7])
    stamp = (out / "train" / "0").stat().st_mtime_ns
    bench.mnist_folder(out, tiny_mnist)  # complete: reused, nothing written
    assert (out / "train" / "0").stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob(".*partial"))


def test_mnist_folder_refuses_a_folder_it_did_not_make(tmp_path: Path, tiny_mnist: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"x")
    assert bench.main(["--mnist-folder", str(tmp_path / "photos"), "--data-dir",
                       str(tiny_mnist)]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert [p.name for p in (tmp_path / "photos").iterdir()] == ["cat.jpg"]


def test_mnist_folder_mode_times_the_loaders_on_it(tmp_path: Path, tiny_mnist: Path) -> None:
    out = tmp_path / "loader.json"
    assert bench.main(["--mnist-folder", str(tmp_path / "pngs"), "--data-dir", str(tiny_mnist),
                       "--workers", "0", "--work-dir", str(tmp_path), "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["images"] == 800 and record["image_shape"] == [1, 28, 28]


# ---------------------------------------------------------------- --train-throughput
@pytest.mark.integration  # four (tiny) training runs
def test_train_throughput_trains_both_data_groups(tmp_path: Path, tiny_mnist: Path) -> None:
    pngs = bench.mnist_folder(tmp_path / "pngs", tiny_mnist, workers=0)
    record = bench.train_throughput(pngs, tiny_mnist, steps=2, repeats=1, work_dir=tmp_path,
                                    extra=("data.val_size=100", "trainer.accelerator=cpu"))
    rates = record["images_per_s"]
    assert set(rates) == {"mnist", "image_folder"}
    assert all(len(r) == 1 and r[0] > 0 and math.isfinite(r[0]) for r in rates.values())
    assert record["ratio"]["median"] == pytest.approx(rates["image_folder"][0] / rates["mnist"][0])
    assert record["ratio"]["bar"] == 0.9
    assert "image_folder / mnist:" in bench.train_table(record)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pngs"]  # the runs' folder is gone


def test_train_throughput_overrides_differ_only_in_the_data(tmp_path: Path) -> None:
    args = [tmp_path / "pngs", tmp_path, 50, tmp_path / "run"]
    mnist, folder = (bench.train_overrides(g, *args) for g in bench.TRAIN_GROUPS)
    assert [o for o in mnist if not o.startswith("data=")] == [
        o for o in folder if not o.startswith(("data=", "data.root=", "data.cache_dir="))]
    assert "+trainer.limit_train_batches=50" in mnist and "data.val_size=5000" in mnist


# ---------------------------------------------------------------- --peak-memory
def test_pattern_folder_is_generated_once_and_learnable(tmp_path: Path) -> None:
    out = bench.pattern_folder(tmp_path / "gen", 40, workers=2)
    files = sorted(out.rglob("*.png"))
    assert len(files) == 40 and len({f.parent.name for f in files}) == bench.PATTERN_CLASSES
    image = Image.open(files[0])
    assert image.mode == "RGB" and image.size == (bench.PATTERN_SIDE, bench.PATTERN_SIDE)
    a, b = (bench.pattern_image(label, seed=0).astype(int) for label in (0, 5))
    assert np.abs(a - b).mean() > 20  # the classes differ beyond the noise
    assert bench.pattern_folder(out, 40) == out  # reused
    with pytest.raises(bench.DataError, match="holds 40 generated images, not 50"):
        bench.pattern_folder(out, 50)


def test_peak_memory_measures_scan_decode_and_a_pass(tmp_path: Path) -> None:
    root = bench.pattern_folder(tmp_path / "gen", 50, workers=0)
    record = bench.peak_memory(root, workers=0, batch_size=16, work_dir=tmp_path)
    assert record["images"] == 50 and record["image_shape"] == [3, 32, 32]
    rss = record["peak_rss_mb"]
    assert rss["process"] >= rss["before"] > 0
    assert rss["data_path"] == pytest.approx(rss["process"] - rss["before"])
    assert record["under_limit"] == (rss["process"] < record["limit_mb"])
    # allocated memory: part of the resident, and it grew (or held) while the data was read
    assert 0 < rss["anonymous_before"] <= rss["anonymous"] <= rss["process"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen"]  # its cache dir is gone


def test_the_anonymous_peak_sees_an_allocation_made_inside() -> None:
    size = 64 * 2**20
    with bench.AnonymousPeak(every_s=0.001) as peak:
        block = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # fresh pages
        block.write(b"\1" * size)
        time.sleep(0.05)
        block.close()
    assert peak.peak_mb >= bench._status_mb("RssAnon:") + 50


@pytest.mark.integration  # a subprocess
def test_peak_memory_mode_measures_in_a_fresh_process(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "memory.json"
    assert bench.main(["--peak-memory", str(tmp_path / "gen"), "--images", "30", "--workers",
                       "0", "--batch-size", "8", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["images"] == 30 and record["limit_mb"] == 1500 and "meta" in record
    assert "peak RSS" in capsys.readouterr().out
    assert bench.main(["--peak-memory", str(tmp_path / "gen"), "--images", "0"]) == 2
    assert "--images must be at least 1" in capsys.readouterr().err
