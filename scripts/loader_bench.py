"""Loading speed of ``data=image_folder`` against torchvision's ``ImageFolder`` + ``DataLoader``
with the same transforms and workers, measured in the same run (issue 20's bars: the first
epoch >= 1.0x the anchor, cached epochs >= 5x).

    python scripts/loader_bench.py --make DIR --source mnist|rgb [--n N]   # a folder to time
    python scripts/loader_bench.py DIR [--workers 2] [--batch-size 64] [--size H W]
        [--channels 1|3] [--json out.json]

``--make`` writes ``DIR/<class>/<i>.png``: MNIST digits from the IDX files under
``$DLEXP_DATA_DIR/MNIST/raw`` (``--source mnist``), or synthetic RGB images of mixed sizes, half
JPEG and half PNG (``--source rgb``).

On a folder, every file is read once first (so no side pays for a cold disk), then, in one
process:

- scan: ``folder.scan`` with a fresh cache dir (cold: hashes and probes every file), then again
  on that cache (warm: nothing changed);
- module: ``ImageFolderDataModule`` built on a fresh cache dir (scan + decode into the uint8
  memory map) and one pass over its batches (the first epoch); a second pass (a cached epoch);
  a new module built on the warm cache and one pass (a later run); peak RSS of the process
  after these (``ru_maxrss``, before the anchor runs; also the peak before them, the imports'
  share, and the largest scan/decode worker's own);
- anchor: ``torchvision.datasets.ImageFolder`` (PIL decode, ``Resize`` to the same size,
  ``PILToTensor``: uint8) and ``DataLoader(num_workers=--workers)``, two full passes.

A pass reads every image once (train, val and test batches, shuffled like training), as uint8;
normalising happens on the device in training, in both cases, and is not timed. Rates are
images/s; the ratios divide by the anchor's first pass (its second differs only by the OS cache,
already warm).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import sys
import tempfile
import time
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
import torch

from dlexp.data import folder
from dlexp.data.idx import read_idx
from dlexp.data.image_folder import DEFAULT_SIZE, OWN_SIZE_MAX, ImageFolderDataModule, probe
from dlexp.errors import DataError

SOURCES = ("mnist", "rgb")
MNIST_FILES = (("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
RGB_CLASSES = 10
RGB_SIDES = (48, 320)  # the synthetic images' sides are drawn from this range
PROGRESS_EVERY = 10_000


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ --make
def make_folder(out: Path, source: str, n: int, data_dir: Path | None = None,
                seed: int = 0) -> int:
    """Write ``n`` images as ``out/<class>/<i>.png`` (or ``.jpg``); returns how many."""
    from PIL import Image

    if source == "mnist":
        images, labels = _mnist(data_dir or Path(os.environ.get("DLEXP_DATA_DIR", "data")), n)
        pictures = ((Image.fromarray(x), str(y), "png")
                    for x, y in zip(images, labels, strict=True))
    else:
        pictures = _rgb(n, seed)
    count = 0
    for count, (image, label, ext) in enumerate(pictures, 1):
        (out / label).mkdir(parents=True, exist_ok=True)
        image.save(out / label / f"{count - 1}.{ext}")
        if count % PROGRESS_EVERY == 0:
            progress(f"make: {count}/{n} images written")
    return count


def _mnist(data_dir: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` MNIST digits (training set, then test set) and their labels."""
    raw = data_dir / "MNIST" / "raw"
    images, labels = [], []
    for image_name, label_name in MNIST_FILES:
        paths = [next((p for p in (raw / name, raw / f"{name}.gz") if p.is_file()), None)
                 for name in (image_name, label_name)]
        if None in paths:
            raise DataError(f"no {image_name}[.gz] and {label_name}[.gz] in {raw}: set "
                            "DLEXP_DATA_DIR (or --data-dir) to a folder holding MNIST/raw/")
        images.append(read_idx(paths[0], 2051).numpy())
        labels.append(read_idx(paths[1], 2049).numpy())
    return np.concatenate(images)[:n], np.concatenate(labels)[:n]


def _rgb(n: int, seed: int):
    """``n`` (image, class, extension): smooth colour gradients with noise, a tint per class,
    sides drawn from ``RGB_SIDES``; even ones JPEG, odd ones PNG."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    tints = rng.uniform(0.3, 1.0, (RGB_CLASSES, 3))
    for i in range(n):
        label = i % RGB_CLASSES
        h, w = (int(v) for v in rng.integers(*RGB_SIDES, size=2))
        ramp = np.linspace(0, 1, w)[None, :, None] * np.linspace(0.2, 1, h)[:, None, None]
        pixels = 255 * ramp * tints[label] + rng.normal(0, 12, (h, w, 3))
        image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")
        yield image, f"class{label}", "jpg" if i % 2 == 0 else "png"


# ------------------------------------------------------------------------------ the run
def read_all(root: Path) -> int:
    """Read every file under ``root`` once (the OS cache then holds them); returns bytes."""
    total = 0
    for path in sorted(root.rglob("*")):
        if path.is_file():
            total += len(path.read_bytes())
    return total


def timed_scan(root: Path, cache_dir: Path, workers: int) -> tuple[folder.Manifest, float]:
    start = time.perf_counter()
    manifest = folder.scan(root, cache_dir=cache_dir, probe=probe, workers=workers)
    return manifest, time.perf_counter() - start


def image_spec(manifest: folder.Manifest, size: tuple[int, int] | None,
               channels: int | None) -> tuple[tuple[int, int], int]:
    """The size and channels the module picks by itself (``image_size``/``channels`` unset),
    unless given: both sides must read images into the same shape."""
    infos = [info for info in manifest.info if info]
    if channels is None:
        channels = 1 if infos and all(info["gray"] for info in infos) else 3
    if size is None:
        sizes = Counter(tuple(info["size"]) for info in infos)
        own = next(iter(sizes)) if len(sizes) == 1 else None
        size = own if own and max(own) <= OWN_SIZE_MAX else DEFAULT_SIZE
    return (int(size[0]), int(size[1])), channels


def build_module(root: Path, cache_dir: Path, size: tuple[int, int], channels: int,
                 batch_size: int, workers: int) -> ImageFolderDataModule:
    return ImageFolderDataModule(root=str(root), image_size=list(size), channels=channels,
                                 batch_size=batch_size, eval_batch_size=batch_size,
                                 val_size=0.1, test_size=0.1, workers=workers,
                                 cache_dir=str(cache_dir))


def module_pass(dm: ImageFolderDataModule) -> int:
    """Every image once, as training and evaluation read them; returns how many."""
    count = 0
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        for x, _ in loader:
            count += len(x)
    return count


def anchor_loader(root: Path, size: tuple[int, int], channels: int, batch_size: int,
                  workers: int) -> torch.utils.data.DataLoader:
    """torchvision's way: decode with PIL, resize (bilinear, antialiased), uint8 tensor."""
    from PIL import Image
    from torchvision import datasets
    from torchvision.transforms import v2

    mode = "L" if channels == 1 else "RGB"

    def load(path: str) -> Image.Image:
        with open(path, "rb") as f:
            return Image.open(f).convert(mode)

    transform = v2.Compose([v2.Resize(size, antialias=True), v2.PILToTensor()])
    dataset = datasets.ImageFolder(str(root), transform=transform, loader=load)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                       num_workers=workers)


def anchor_pass(loader: torch.utils.data.DataLoader) -> int:
    count = 0
    for x, _ in loader:
        count += len(x)
    return count


def _peak_rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def _timed(fn) -> tuple[object, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def run(root: Path, workers: int = 2, batch_size: int = 64, size: tuple[int, int] | None = None,
        channels: int | None = None, work_dir: Path | None = None) -> dict:
    """Every measurement on ``root``, as one record (see the module's docstring)."""
    rss_start = _peak_rss_mb(resource.RUSAGE_SELF)  # the imports' share of the peak
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        progress(f"reading {root} once ({read_all(root) / 2**20:.1f} MiB)")
        progress("scan: cold, then warm")
        manifest, scan_cold = timed_scan(root, Path(tmp) / "scan", workers)
        _, scan_warm = timed_scan(root, Path(tmp) / "scan", workers)
        size, channels = image_spec(manifest, size, channels)
        progress(f"module: {len(manifest)} images to {channels}x{size[0]}x{size[1]}")
        build = partial(build_module, root, Path(tmp) / "cache", size, channels, batch_size,
                        workers)
        seconds, counts = module_timings(build)
        rss = {"module_process": _peak_rss_mb(resource.RUSAGE_SELF), "before_module": rss_start,
               "workers": _peak_rss_mb(resource.RUSAGE_CHILDREN)}
    progress(f"anchor: torchvision ImageFolder + DataLoader (num_workers={workers}), 2 passes")
    loader = anchor_loader(root, size, channels, batch_size, workers)
    for name in ("anchor", "anchor_second"):
        counts[name], seconds[name] = _timed(partial(anchor_pass, loader))
    seconds.update(scan_cold=scan_cold, scan_warm=scan_warm)
    rates = {"anchor": counts["anchor"] / seconds["anchor"],
             "anchor_second": counts["anchor_second"] / seconds["anchor_second"],
             "first_epoch": counts["first"] / (seconds["first_build"] + seconds["first_pass"]),
             "cached_epoch": counts["cached"] / seconds["cached_pass"],
             "later_run": counts["later"] / (seconds["later_build"] + seconds["later_pass"])}
    return {"images": len(manifest), "image_shape": [channels, *size], "workers": workers,
            "batch_size": batch_size, "seconds": seconds, "images_per_s": rates,
            "ratio": {k: rates[k] / rates["anchor"]
                      for k in ("first_epoch", "cached_epoch", "later_run")},
            "peak_rss_mb": rss}


def module_timings(build) -> tuple[dict[str, float], dict[str, int]]:
    """(seconds, images) of the module's first epoch (a fresh cache dir: build, then a pass),
    a cached pass, and a later run (a new module on the warm cache, then a pass)."""
    seconds, counts = {}, {}
    dm, seconds["first_build"] = _timed(build)
    counts["first"], seconds["first_pass"] = _timed(partial(module_pass, dm))
    progress("module: cached epoch")
    counts["cached"], seconds["cached_pass"] = _timed(partial(module_pass, dm))
    del dm  # its memory map closes before the later run opens its own
    progress("module: a later run on the warm cache")
    dm, seconds["later_build"] = _timed(build)
    counts["later"], seconds["later_pass"] = _timed(partial(module_pass, dm))
    return seconds, counts


def table(record: dict) -> str:
    rates, ratio, sec = record["images_per_s"], record["ratio"], record["seconds"]
    rows = [("torchvision ImageFolder + DataLoader", rates["anchor"], sec["anchor"], 1.0),
            ("  its second pass", rates["anchor_second"], sec["anchor_second"],
             rates["anchor_second"] / rates["anchor"]),
            ("image_folder: first epoch (scan + decode + pass)", rates["first_epoch"],
             sec["first_build"] + sec["first_pass"], ratio["first_epoch"]),
            ("image_folder: cached epoch", rates["cached_epoch"], sec["cached_pass"],
             ratio["cached_epoch"]),
            ("image_folder: later run (warm cache + pass)", rates["later_run"],
             sec["later_build"] + sec["later_pass"], ratio["later_run"])]
    lines = [f"{record['images']} images -> {'x'.join(map(str, record['image_shape']))} uint8, "
             f"batch {record['batch_size']}, {record['workers']} workers",
             "| pass | images/s | s | / anchor |", "| --- | --- | --- | --- |"]
    lines += [f"| {name} | {rate:.0f} | {s:.2f} | {r:.2f} |" for name, rate, s, r in rows]
    rss = record["peak_rss_mb"]
    lines.append(f"scan: {sec['scan_cold']:.2f} s cold, {sec['scan_warm']:.2f} s warm; peak RSS "
                 f"{rss['module_process']:.0f} MB ({rss['before_module']:.0f} MB before the "
                 f"module path; its workers {rss['workers']:.0f} MB)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", nargs="?", type=Path, help="the image folder to time")
    p.add_argument("--make", type=Path, metavar="DIR", help="write a folder to time, and stop")
    p.add_argument("--source", choices=SOURCES, default="mnist", help="what --make writes")
    p.add_argument("--n", type=int, default=70_000, help="images --make writes")
    p.add_argument("--data-dir", type=Path, help="holds MNIST/raw/ (default: $DLEXP_DATA_DIR)")
    p.add_argument("--workers", type=int, default=2,
                   help="DataLoader workers of the anchor, decode workers of the module")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                   help="default: what data=image_folder picks for the folder")
    p.add_argument("--channels", type=int, choices=(1, 3))
    p.add_argument("--work-dir", type=Path, help="where the fresh cache dirs go (default: /tmp)")
    p.add_argument("--json", type=Path, help="write the record here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        return _main(args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    if args.make is not None:
        if args.n < 1:
            raise DataError(f"--n must be at least 1, got {args.n}")
        if args.make.exists() and any(args.make.iterdir()):
            raise DataError(f"--make: {args.make} is not empty; give a new folder")
        count = make_folder(args.make, args.source, args.n, args.data_dir)
        print(f"{count} images written to {args.make}")
        return 0
    if args.root is None:
        raise DataError("give the image folder to time (or --make DIR to write one)")
    if args.workers < 0 or args.batch_size < 1:
        raise DataError(f"--workers must be >= 0 and --batch-size >= 1, got {args.workers} "
                        f"and {args.batch_size}")
    record = run(args.root, args.workers, args.batch_size, args.size, args.channels,
                 args.work_dir)
    record["meta"] = {"root": str(args.root), "python": platform.python_version(),
                      "torch": torch.__version__, "cpus": os.cpu_count(),
                      "threads": torch.get_num_threads(), "machine": platform.machine()}
    print(table(record))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
