"""data=image_folder: decoding (every image mode), the decoded cache, bad files, the split
written and reused, and the batches the networks get."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dlexp.builders import build_net
from dlexp.data import image_folder
from dlexp.data.augment import natural_augment
from dlexp.data.image_folder import ImageFolderDataModule
from dlexp.errors import DataError
from dlexp.inputs import load_picture, normalize_images

RNG = np.random.default_rng(0)


def image(c: int, mode: str = "RGB", size: tuple[int, int] = (8, 8)) -> Image.Image:
    """Class ``c``: a bright square in one corner of a noisy dark image (H, W = size)."""
    pixels = RNG.integers(0, 60, size=(*size, 3), dtype=np.uint8)
    r, q = (c // 2) * size[0] // 2, (c % 2) * size[1] // 2
    pixels[r:r + size[0] // 2, q:q + size[1] // 2] = 220
    im = Image.fromarray(pixels)
    return im.convert(mode) if mode != "RGB" else im


def folder_of(root: Path, per_class: dict[str, int], mode: str = "RGB", ext: str = ".png",
              size: tuple[int, int] = (8, 8)) -> Path:
    for k, (name, n) in enumerate(per_class.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image(k, mode, size).save(root / name / f"{i}{ext}")
    return root


def module(root: Path, tmp_path: Path, **kwargs) -> ImageFolderDataModule:
    options = {"cache_dir": str(tmp_path / "cache"), "val_size": 0.2, "test_size": 0.2,
               "workers": 0, **kwargs}
    return ImageFolderDataModule(str(root), **options)


@pytest.fixture
def rgb_folder(tmp_path: Path) -> Path:
    return folder_of(tmp_path / "pics", {"cat": 10, "dog": 10, "owl": 10})


def test_describes_splits_and_batches(rgb_folder: Path, tmp_path: Path) -> None:
    dm = module(rgb_folder, tmp_path)
    info = dm.describe()
    assert info["class_names"] == ["cat", "dog", "owl"] and info["channels"] == 3
    assert info["image_size"] == [8, 8] and info["resize"] == "squish"  # their own size
    assert info["net_kwargs"] == {"in_shape": [3, 8, 8], "num_classes": 3}
    assert [len(dm.train_set[1]), len(dm.val_set[1]), len(dm.test_set[1])] == [18, 6, 6]
    assert torch.bincount(dm.val_set[1]).tolist() == [2, 2, 2]  # stratified
    train = dm.images[dm.train_set[0]].double()
    assert info["mean"] == pytest.approx(train.mean(dim=(0, 2, 3)).tolist())
    assert info["std"] == pytest.approx(train.std(dim=(0, 2, 3), unbiased=False).tolist())
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (18, 3, 8, 8)  # uint8 travels
    x, y = dm.on_after_batch_transfer((x, y), 0)
    assert x.dtype == torch.float32 and abs(float(x.mean())) < 1.0
    # the row of a file is that file, decoded as predict decodes it
    i = int(dm.split_indices["test"][0])
    row = int(dm.rows[i])
    assert torch.equal(dm.images[row], load_picture(dm.manifest.paths[i], (8, 8), 3))


@pytest.mark.parametrize("model", ["cnn", "mlp", "resnet18"])
def test_networks_take_the_batches(rgb_folder: Path, tmp_path: Path, model: str) -> None:
    dm = module(rgb_folder, tmp_path, image_size=[16, 12])
    node = {"cnn": {"_target_": "dlexp.models.cnn.CNN", "blocks": [{"filters": 4}],
                    "dense": [8]},
            "mlp": {"_target_": "dlexp.models.mlp.MLP", "hidden": [8]},
            "resnet18": {"_target_": "dlexp.models.resnet.ResNet18"}}[model]
    net = build_net(node, dm.describe())
    x, _ = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    assert x.shape == (6, 3, 16, 12) and net(x).shape == (6, 3)


def test_channels_follow_the_data(tmp_path: Path) -> None:
    root = folder_of(tmp_path / "g", {"a": 3, "b": 3}, mode="L")
    image(0, "P").convert("L").convert("P").save(root / "a" / "palette.png")  # gray palette
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(root / "b" / "deep.png")
    dm = module(root, tmp_path, test_size=2, val_size=2)
    assert dm.channels == 1 and dm.describe()["input_shape"] == [1, 8, 8]
    deep = dm.manifest.rels.index("b/deep.png")
    assert int(dm.images[int(dm.rows[deep])].max()) == round(40000 / 257)  # 16-bit scaled
    image(1, "RGB").save(root / "b" / "colour.png")
    assert module(root, tmp_path, test_size=2, val_size=2).channels == 3
    assert module(root, tmp_path, test_size=2, val_size=2, channels=1).channels == 1


def test_load_picture_modes_and_resizing(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))  # dark ink on transparent black
    rgba.paste((10, 20, 30, 255), (0, 0, 4, 4))
    out = load_picture(rgba, (8, 8), 3)
    assert out[:, 6, 6].tolist() == [255, 255, 255]  # flattened onto white
    assert out[:, 1, 1].tolist() == [10, 20, 30]
    palette = Image.new("P", (4, 4))
    palette.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    palette.paste(1, (0, 0, 2, 2))
    assert load_picture(palette, (4, 4), 3)[:, 0, 0].tolist() == [200, 10, 10]
    wide = Image.new("RGB", (8, 4), (255, 255, 255))  # W 8, H 4
    squish, crop, pad = (load_picture(wide, (4, 4), 1, mode) for mode in
                         ("squish", "crop", "pad"))
    assert squish.shape == crop.shape == pad.shape == (1, 4, 4)
    assert int(squish.min()) == 255 and int(crop.min()) == 255
    assert pad[0, 0].tolist() == [0] * 4 and pad[0, 1].tolist() == [255] * 4  # black bars
    # a JPEG turned by its EXIF orientation, decoded upright (and at a reduced scale)
    tall = Image.new("RGB", (64, 32), (250, 250, 250))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: shown 32 wide, 64 high
    tall.save(tmp_path / "turned.jpg", exif=exif)
    assert load_picture(tmp_path / "turned.jpg", (16, 8), 3, "pad").shape == (3, 16, 8)
    assert int(load_picture(tmp_path / "turned.jpg", (16, 8), 3, "pad").min()) > 200  # no bars
    with pytest.raises(ValueError, match="cannot read image"):
        load_picture(io.BytesIO(b"not an image"), (4, 4), 1)


def test_second_build_decodes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = folder_of(tmp_path / "many", {"a": 150, "b": 150}, size=(4, 4))
    first = module(root, tmp_path, workers=2)  # more than one chunk: worker processes
    (cached,) = (tmp_path / "cache" / "image_folder").glob("*.u8")
    stamp = cached.stat().st_mtime_ns
    decoded = []
    real = image_folder.picture
    monkeypatch.setattr(image_folder, "picture",  # decodes the bytes the scan read
                        lambda source, *a: decoded.append(source.getvalue()) or real(source, *a))
    again = module(root, tmp_path)
    assert decoded == [] and cached.stat().st_mtime_ns == stamp
    assert torch.equal(again.images, first.images)
    image(1, size=(4, 4)).save(root / "b" / "new.png")
    module(root, tmp_path)  # one file more: only it is decoded, the rest copied
    assert decoded == [(root / "b" / "new.png").read_bytes()]
    assert not cached.exists()  # the older build is gone
    assert len(list((tmp_path / "cache" / "image_folder").glob("*.u8"))) == 1
    assert len(list((tmp_path / "cache" / "image_folder").glob("*.files"))) == 1


def test_bad_files_end_in_one_error_naming_them(rgb_folder: Path, tmp_path: Path) -> None:
    good = (rgb_folder / "cat" / "0.png").read_bytes()
    (rgb_folder / "cat" / "truncated.png").write_bytes(good[: len(good) // 2])
    (rgb_folder / "dog" / "text.png").write_bytes(b"hello, not a png")
    (rgb_folder / "owl" / "empty.jpg").write_bytes(b"")
    with pytest.raises(DataError) as e:
        module(rgb_folder, tmp_path)
    message = str(e.value)
    assert "3 bad files: cat/truncated.png (cannot read image" in message
    assert "dog/text.png (cannot read image" in message and "owl/empty.jpg (empty file" in message
    assert message.endswith("set data.on_bad_file=skip to train without them")
    assert "\n" not in message
    for i in range(10):
        (rgb_folder / "owl" / f"bad{i}.png").write_bytes(b"x")
    with pytest.raises(DataError, match=r"13 bad files: .* and 3 more\. Fix"):
        module(rgb_folder, tmp_path)


def test_skip_trains_without_them_and_lists_them(rgb_folder: Path, tmp_path: Path) -> None:
    (rgb_folder / "dog" / "text.png").write_bytes(b"hello, not a png")
    run = tmp_path / "run"
    run.mkdir()
    dm = module(rgb_folder, tmp_path, on_bad_file="skip", run_dir=str(run))
    assert len(dm.manifest) == 30
    assert (run / "bad_files.txt").read_text().startswith("dog/text.png\tcannot read image")
    listed = sum(len((run / "split" / f"{p}.txt").read_text().splitlines())
                 for p in ("train", "val", "test"))
    assert listed == 30


def test_the_split_is_written_and_reused(rgb_folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    first = module(rgb_folder, tmp_path, run_dir=str(run), seed=1)
    val = (run / "split" / "val.txt").read_text().splitlines()
    assert val == [first.manifest.rel(i) for i in first.split_indices["val"].tolist()]
    other = module(rgb_folder, tmp_path, seed=2)
    assert not torch.equal(other.val_set[0], first.val_set[0])
    reused = module(rgb_folder, tmp_path, seed=2, split_file=str(run))
    assert torch.equal(reused.val_set[0], first.val_set[0])
    assert torch.equal(reused.test_set[0], first.test_set[0])
    again = module(rgb_folder, tmp_path, seed=2, run_dir=str(run))  # a requeued run in place
    assert torch.equal(again.val_set[0], first.val_set[0])
    with pytest.raises(DataError, match="data.split_file: no train.txt in"):
        module(rgb_folder, tmp_path, split_file=str(tmp_path))


def test_folds_and_given_split_folders(tmp_path: Path) -> None:
    root = folder_of(tmp_path / "s", {"train/a": 6, "train/b": 6, "test/a": 2, "test/b": 2})
    folds = [module(root, tmp_path, folds=3, fold=k) for k in range(3)]
    assert all(len(dm.test_set[1]) == 4 for dm in folds)  # the test folder, as it is
    vals = torch.cat([dm.val_set[0] for dm in folds]).sort().values
    assert torch.equal(vals, torch.cat([folds[0].train_set[0], folds[0].val_set[0]]).sort()
                       .values)


def test_settings_are_checked_first(rgb_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="data.resize must be one of squish, crop, pad"):
        module(rgb_folder, tmp_path, resize="fit")
    with pytest.raises(ValueError, match=r"data.image_size must be \[height, width\]"):
        module(rgb_folder, tmp_path, image_size=[0, 4])
    with pytest.raises(ValueError, match="data.root is required: data.root=DIR"):
        ImageFolderDataModule(cache_dir=str(tmp_path))


def test_table_of_images(rgb_folder: Path, tmp_path: Path) -> None:
    rows = [f"pics/{c}/{i}.png,{c}\n" for c in ("cat", "dog") for i in range(10)]
    (tmp_path / "labels.csv").write_text("path,label\n" + "".join(rows))
    dm = ImageFolderDataModule(table=str(tmp_path / "labels.csv"), workers=0,
                               cache_dir=str(tmp_path / "cache"))
    assert dm.class_names == ["cat", "dog"] and len(dm.manifest) == 20


def test_predict_reads_a_file_as_training_did(rgb_folder: Path, tmp_path: Path) -> None:
    dm = module(rgb_folder, tmp_path, image_size=6, resize="crop")
    info = dm.describe()
    path = dm.manifest.paths[0]
    x = normalize_images([load_picture(path, info["image_size"], info["channels"],
                                       info["resize"])], info)
    row = dm.images[int(dm.rows[0])].unsqueeze(0)
    assert torch.allclose(x, dm._normalize(row))


def test_natural_augment_keeps_shape_and_range() -> None:
    x = torch.randint(0, 256, (6, 3, 10, 12)).float()
    g = torch.Generator().manual_seed(0)
    out = natural_augment(x, g)
    assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 255
    assert not torch.equal(out, x)
    gray = natural_augment(x[:, :1], torch.Generator().manual_seed(0))
    assert gray.shape == (6, 1, 10, 12)


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every file the scan reads (in this process: workers=0)."""
    from dlexp.data import folder

    read: list[str] = []
    real = folder._read_one
    monkeypatch.setattr(folder, "_read_one", lambda p, s, probe, **kw: read.append(p) or
                        real(p, s, probe, **kw))
    return read


@pytest.mark.parametrize(("size", "channels"), [(None, None), ([8, 8], 3)])
def test_a_cold_start_reads_each_file_once(rgb_folder: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           size: list[int] | None, channels: int | None) -> None:
    read = _count_reads(monkeypatch)
    monkeypatch.setattr(image_folder, "SAMPLE", 4)  # headers read first when the spec is unset
    dm = module(rgb_folder, tmp_path, image_size=size, channels=channels)
    twice = 4 if size is None else 0
    assert set(read) == set(dm.manifest.paths) and len(read) == 30 + twice  # hashed, decoded
    expected = load_picture(rgb_folder / dm.manifest.rels[0], (8, 8), 3)
    assert torch.equal(dm.images[int(dm.rows[0])], expected)
    read.clear()
    again = module(rgb_folder, tmp_path, image_size=size, channels=channels)
    assert read == [] and torch.equal(again.images, dm.images)  # a warm start reads nothing
    (rgb_folder / "dog" / "3.png").unlink()
    image(0).save(rgb_folder / "dog" / "3.png")  # changed since: read again, decoded again
    changed = module(rgb_folder, tmp_path, image_size=size, channels=channels)
    assert read == [str((rgb_folder / "dog" / "3.png").resolve())]
    row = int(changed.rows[changed.manifest.rels.index("dog/3.png")])
    assert torch.equal(changed.images[row], load_picture(rgb_folder / "dog" / "3.png", (8, 8), 3))


def test_a_wrong_guess_from_the_sampled_headers_is_decoded_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = folder_of(tmp_path / "d", {"a": 6, "b": 6}, mode="L")
    image(1).save(root / "b" / "5.png")  # one RGB image among gray ones
    monkeypatch.setattr(image_folder, "SAMPLE", 1)  # the sample sees a/0.png only
    dm = module(root, tmp_path)
    assert dm.channels == 3 and dm.images.shape[1:] == (3, 8, 8)
    right = module(root, tmp_path / "other", channels=3)
    assert torch.equal(dm.images, right.images)
    assert len(list((tmp_path / "cache" / "image_folder").glob("*.u8"))) == 1  # guess deleted


def test_bad_files_stop_a_cold_start_before_training_and_duplicates_warn(
        rgb_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (rgb_folder / "owl" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match=r"1 bad file: owl/broken.png \(cannot read image"):
        module(rgb_folder, tmp_path, workers=2)
    (rgb_folder / "owl" / "broken.png").unlink()
    for i in range(10):  # every cat also as an owl: some land in different splits
        (rgb_folder / "owl" / f"{i}.png").write_bytes((rgb_folder / "cat" / f"{i}.png")
                                                      .read_bytes())
    module(rgb_folder, tmp_path / "fresh", workers=2)
    assert "have the same content as a file in another split" in caplog.text


def test_the_decode_finds_what_the_probe_finds(tmp_path: Path) -> None:
    """The single-read path reads each header once, in the decode: the scan cache must hold
    what :func:`probe` would have said (a later run picks the size and channels from it)."""
    root = folder_of(tmp_path / "d", {"a": 3}, mode="L")
    folder_of(root, {"b": 3}, mode="P", ext=".png")
    folder_of(root, {"c": 3}, ext=".jpg", size=(6, 10))
    tall = Image.new("RGB", (64, 32), (250, 250, 250))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown 32 wide, 64 high
    tall.save(root / "c" / "turned.jpg", exif=exif)
    (root / "c" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    dm = module(root, tmp_path, image_size=[8, 8], channels=3, on_bad_file="skip")
    scanned = image_folder.folder.scan(root, read=False)
    image_folder.folder.cached_fingerprints(scanned, tmp_path / "cache", image_folder.probe)
    for path, info, error in zip(scanned.paths, scanned.info, scanned.errors, strict=True):
        try:
            assert info == image_folder.probe(Path(path).read_bytes()) and error is None
        except ValueError as e:
            assert info is None and error == str(e) and "BytesIO" not in error
    assert "c/broken.jpg" not in dm.manifest.rels
    assert scanned.info[scanned.rels.index("c/turned.jpg")]["size"] == [64, 32]


def test_imagenet_normalisation_is_what_torchvision_weights_expect(rgb_folder: Path,
                                                                   tmp_path: Path) -> None:
    info = module(rgb_folder, tmp_path, normalize="imagenet").describe()
    assert info["mean"] == pytest.approx([0.485 * 255, 0.456 * 255, 0.406 * 255])
    assert info["std"] == pytest.approx([0.229 * 255, 0.224 * 255, 0.225 * 255])
    gray = module(rgb_folder, tmp_path / "gray", normalize="imagenet", channels=1).describe()
    assert gray["mean"] == pytest.approx([(0.485 + 0.456 + 0.406) / 3 * 255])


def _rss_file_mb() -> float:
    """This process's resident file-backed pages (Linux), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no RssFile in /proc/self/status (not Linux)")


def test_reading_the_decoded_cache_does_not_pile_up_in_resident_memory(tmp_path: Path) -> None:
    """Pages read from the memory map leave the process's resident set when released, and the
    map still reads the same bytes (from the kernel's page cache)."""
    path = tmp_path / "cache.u8"
    written = np.memmap(path, np.uint8, "w+", shape=(1024, 64 * 1024))  # 64 MB
    written[:] = np.arange(1024, dtype=np.uint8)[:, None]
    written.flush()
    del written
    images = np.memmap(path, np.uint8, "c", shape=(1024, 64 * 1024))
    before = _rss_file_mb()
    total = int(images.sum(dtype=np.uint64))
    assert _rss_file_mb() >= before + 48  # the whole map is resident once read
    image_folder.release_pages(images)
    assert _rss_file_mb() <= before + 8
    assert int(images.sum(dtype=np.uint64)) == total


def test_batches_are_the_same_when_the_pages_are_released(rgb_folder: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    dm = module(rgb_folder, tmp_path, batch_size=4)
    dm.describe()
    released: list[int] = []
    monkeypatch.setattr(image_folder, "release_pages", lambda pages: released.append(id(pages)))
    without = [x for x, _ in dm.train_dataloader()]  # a small cache stays mapped
    assert released == []
    assert dm._pages.nbytes > 1000
    monkeypatch.setattr(image_folder, "MAPPED_BUDGET", 1000)  # a cache larger than its budget
    with_release = [x for x, _ in dm.train_dataloader()]  # a new loader: the same epoch's order
    # a batch of 4 rows may map 4 x FAULT_AROUND, over the budget: dropped after every batch
    assert len(released) == len(with_release) and set(released) == {id(dm._pages)}
    assert len(with_release) == len(without) > 1
    assert all(torch.equal(a, b) for a, b in zip(with_release, without, strict=True))
