"""Loading speed of ``data=image_folder`` against torchvision's ``ImageFolder`` + ``DataLoader``
with the same transforms and workers, measured in the same run (the targets: the first
epoch >= 1.0x the anchor, cached epochs >= 5x).

    python scripts/loader_bench.py --make DIR --source mnist|rgb [--n N]   # a folder to time
    python scripts/loader_bench.py DIR [--workers 2] [--batch-size 64] [--size H W]
        [--channels 1|3] [--json out.json]
    python scripts/loader_bench.py --mnist-folder DIR             # the same, on MNIST's splits
    python scripts/loader_bench.py --train-throughput DIR [--steps 200] [--repeats 3]
    python scripts/loader_bench.py --peak-memory DIR [--images 200000]

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

Issue 20's other bars, each made folder kept in DIR and reused (``reproduce.py loader``):

- ``--mnist-folder``: MNIST as ``DIR/train/<digit>/*.png`` and ``DIR/test/<digit>/*.png``
  (exported when DIR is empty), then the timing above on it;
- ``--train-throughput``: ``experiment=mnist_cnn`` trained ``--steps`` steps through
  ``data=mnist`` and through those folders (decode cache warm), in turns; images/s of the
  training steps and the ratio (bar: >= 0.9x);
- ``--peak-memory``: ``--images`` generated 32x32 RGB PNGs in 10 classes, then, in a fresh
  process, scan + decode into a fresh cache + one pass over every batch; the process's peak RSS
  (bar: under 1.5 GB).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import threading
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
TRAIN_GROUPS = ("mnist", "image_folder")
TRAIN_RATIO_BAR = 0.9  # the target: the cached folder trains at >= 0.9x data=mnist's images/s
PATTERN_CLASSES, PATTERN_SIDE = 10, 32
PEAK_LIMIT_MB = 1500  # the target: under 1.5 GB through a folder of 200k images


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
    parts = [mnist_part(data_dir, *names) for names in MNIST_FILES]
    return (np.concatenate([x for x, _ in parts])[:n],
            np.concatenate([y for _, y in parts])[:n])


def mnist_part(data_dir: Path, image_name: str, label_name: str) -> tuple[np.ndarray, np.ndarray]:
    """The images and labels of one IDX pair under ``data_dir/MNIST/raw`` (``.gz`` or not)."""
    raw = data_dir / "MNIST" / "raw"
    paths = [next((p for p in (raw / name, raw / f"{name}.gz") if p.is_file()), None)
             for name in (image_name, label_name)]
    if None in paths:
        raise DataError(f"no {image_name}[.gz] and {label_name}[.gz] in {raw}: set "
                        "DLEXP_DATA_DIR (or --data-dir) to a folder holding MNIST/raw/")
    return read_idx(paths[0], 2051).numpy(), read_idx(paths[1], 2049).numpy()


def make_mnist_splits(out: Path, data_dir: Path, workers: int | None = None) -> dict[str, int]:
    """The real MNIST as ``out/train/<digit>/<i>.png`` (60k) and ``out/test/<digit>/<i>.png``
    (10k), as ``data=image_folder`` reads split folders, written in ``workers`` processes;
    returns the images per split."""
    counts = {}
    for split, names in zip(("train", "test"), MNIST_FILES, strict=True):
        images, labels = mnist_part(data_dir, *names)
        for digit in np.unique(labels):
            (out / split / str(digit)).mkdir(parents=True, exist_ok=True)
        jobs = [(str(out / split / str(y) / f"{i}.png"), x)
                for i, (x, y) in enumerate(zip(images, labels, strict=True))]
        counts[split] = len(folder.in_workers(_save_pngs, jobs, workers, f"export {split}"))
    return counts


def _save_pngs(jobs: list[tuple[str, np.ndarray]]) -> list[str]:
    from PIL import Image

    for path, pixels in jobs:
        Image.fromarray(pixels).save(path)
    return [path for path, _ in jobs]


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


# ------------------------------------------------------------------------------ --mnist-folder
def mnist_folder(out: Path, data_dir: Path, workers: int | None = None) -> Path:
    """``out`` holding the MNIST split folders: exported once (into a temporary sibling,
    renamed when complete), then reused."""
    if (out / "train").is_dir() and (out / "test").is_dir():
        return out
    return _made_once(out, f"MNIST to {out}/train|test/<digit>/*.png",
                      partial(make_mnist_splits, data_dir=data_dir, workers=workers))


def _made_once(out: Path, what: str, make) -> Path:
    """``make(folder)`` into ``.<out>.partial`` beside ``out``, renamed to ``out`` when done, so
    an interrupted run leaves no half-made folder to be mistaken for a whole one."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out} is not a folder this script made: give an empty or new one")
    partial_dir = out.parent / f".{out.name}.partial"
    if partial_dir.exists():
        shutil.rmtree(partial_dir)
    progress(f"writing {what}")
    make(partial_dir)
    if out.exists():
        out.rmdir()
    partial_dir.rename(out)
    return out


# ------------------------------------------------------------------------------ --train-throughput
def train_overrides(group: str, pngs: Path, data_dir: Path, steps: int, run_dir: Path,
                    extra: tuple[str, ...] = ()) -> list[str]:
    """The same model, steps and validation split through ``data=mnist`` or the MNIST PNG
    folder; only training is timed (``train/samples_per_s``: no validation, no test)."""
    data = ["data=mnist"] if group == "mnist" else [
        "data=image_folder", f"data.root={pngs}", f"data.cache_dir={run_dir.parent / 'cache'}"]
    return [*data, "experiment=mnist_cnn", "callbacks=throughput", "logger=none", "test=false",
            "trainer.max_epochs=1", f"+trainer.limit_train_batches={steps}",
            "+trainer.limit_val_batches=0", "+trainer.enable_progress_bar=false",
            "+trainer.enable_model_summary=false", "data.val_size=5000",
            f"paths.data_dir={data_dir}", f"hydra.run.dir={run_dir}", *extra]


def train_speed(overrides: list[str]) -> float:
    """Images/s of one run's training steps."""
    import dlexp

    run = dlexp.train(*overrides)
    return float(run.metrics["train/samples_per_s"])


def train_throughput(pngs: Path, data_dir: Path, steps: int = 200, repeats: int = 3,
                     work_dir: Path | None = None, extra: tuple[str, ...] = ()) -> dict:
    """``data=image_folder`` on the MNIST folder, its decode cache warm, against ``data=mnist``:
    one untimed run each (the folder's builds its cache), then ``repeats`` pairs in turn, so
    both sides see the same load; the ratio is the median of the pairs' ratios. ``extra``:
    more overrides for both (tests: a smaller validation split)."""
    rates: dict[str, list[float]] = {group: [] for group in TRAIN_GROUPS}
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        for k in range(repeats + 1):
            for group in TRAIN_GROUPS:
                progress(f"train: {group}, {'warm-up' if k == 0 else f'repeat {k}'}")
                rate = train_speed(train_overrides(group, pngs, data_dir, steps,
                                                   Path(tmp) / f"{group}{k}", extra))
                if k:
                    rates[group].append(rate)
    ratios = [f / m for f, m in zip(rates["image_folder"], rates["mnist"], strict=True)]
    return {"steps": steps, "repeats": repeats, "images_per_s": rates,
            "median_images_per_s": {g: statistics.median(r) for g, r in rates.items()},
            "ratio": {"pairs": ratios, "median": statistics.median(ratios),
                      "bar": TRAIN_RATIO_BAR}}


def train_table(record: dict) -> str:
    median, ratio = record["median_images_per_s"], record["ratio"]
    return "\n".join([f"training throughput, {record['steps']} steps of experiment=mnist_cnn, "
                      f"median of {record['repeats']}",
                      "| data | images/s |", "| --- | --- |",
                      *(f"| {g} | {median[g]:.0f} |" for g in TRAIN_GROUPS),
                      f"image_folder / mnist: {ratio['median']:.3f} (bar {ratio['bar']})"])


# ------------------------------------------------------------------------------ --peak-memory
def make_pattern_folder(out: Path, n: int, workers: int | None = None, seed: int = 0) -> int:
    """``n`` 32x32 RGB PNGs in ``out/class<k>/``, 10 classes: noise over a class's coloured
    stripes, written in ``workers`` processes; returns how many."""
    for label in range(PATTERN_CLASSES):
        (out / f"class{label}").mkdir(parents=True, exist_ok=True)
    jobs = [(str(out / f"class{i % PATTERN_CLASSES}" / f"{i}.png"), i % PATTERN_CLASSES, seed + i)
            for i in range(n)]
    return len(folder.in_workers(_save_patterns, jobs, workers, "generate"))


def _save_patterns(jobs: list[tuple[str, int, int]]) -> list[str]:
    from PIL import Image

    for path, label, seed in jobs:
        Image.fromarray(pattern_image(label, seed), "RGB").save(path)
    return [path for path, _, _ in jobs]


def pattern_image(label: int, seed: int) -> np.ndarray:
    """Class ``label``'s colour in stripes ``label + 1`` pixels wide, under uniform noise."""
    rng = np.random.default_rng(seed)
    side = PATTERN_SIDE
    colour = np.array([(label * 37) % 256, (label * 91 + 80) % 256, (255 - label * 23) % 256])
    stripes = ((np.arange(side) // (label + 1)) % 2 == 0)[:, None, None]
    pixels = np.where(stripes, colour, 40) + rng.integers(-40, 41, (side, side, 3))
    return pixels.clip(0, 255).astype(np.uint8)


def pattern_folder(out: Path, n: int, workers: int | None = None) -> Path:
    """``out`` holding ``n`` generated images: generated once, then reused."""
    if out.is_dir() and any(out.glob("class*")):
        found = sum(1 for _ in out.rglob("*.png"))
        if found != n:
            raise DataError(f"{out} holds {found} generated images, not {n}: give an empty or "
                            f"new folder (or --images {found} to reuse it)")
        return out
    return _made_once(out, f"{n} images of {PATTERN_SIDE}x{PATTERN_SIDE} RGB to {out}",
                      partial(make_pattern_folder, n=n, workers=workers))


def peak_memory(root: Path, workers: int = 2, batch_size: int = 64,
                work_dir: Path | None = None) -> dict:
    """Peak RSS of this process through ``data=image_folder``'s scan, decode into a fresh
    cache, and one pass over every batch (train, val, test), and how much of it came after the
    imports (torch and Lightning alone hold most of a GB). Run it in a fresh process: the peak
    counts everything the process did before."""
    before, anonymous_before = _own_peak_rss_mb(), _status_mb("RssAnon:")
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp, AnonymousPeak() as anonymous:
        dm, build_s = _timed(partial(ImageFolderDataModule, root=str(root),
                                     batch_size=batch_size, eval_batch_size=batch_size,
                                     val_size=0.1, test_size=0.1, workers=workers,
                                     cache_dir=tmp))
        count, pass_s = _timed(partial(module_pass, dm))
        shape = list(dm.input_shape)
        del dm
    peak = _own_peak_rss_mb()
    return {"images": count, "image_shape": shape, "workers": workers, "batch_size": batch_size,
            "seconds": {"build": build_s, "pass": pass_s},
            "peak_rss_mb": {"process": peak, "before": before, "data_path": peak - before,
                            "anonymous": anonymous.peak_mb,
                            "anonymous_before": anonymous_before,
                            "workers": _peak_rss_mb(resource.RUSAGE_CHILDREN)},
            "limit_mb": PEAK_LIMIT_MB, "under_limit": peak < PEAK_LIMIT_MB}


class AnonymousPeak:
    """The peak of this process's anonymous memory (RssAnon), sampled by a thread: the RSS peak
    also counts the decoded cache's file pages that a pass maps in, which the kernel can drop
    and read again, so a folder larger than memory still trains."""

    def __init__(self, every_s: float = 0.005) -> None:
        self.every_s, self.peak_mb, self._stop = every_s, 0.0, threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, _status_mb("RssAnon:"))
            self._stop.wait(self.every_s)

    def __enter__(self) -> AnonymousPeak:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, _status_mb("RssAnon:"))


def _status_mb(key: str) -> float:
    """A field of /proc/self/status in MB (0 where there is none)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return 0.0
    line = next((line for line in status.splitlines() if line.startswith(key)), None)
    return int(line.split()[1]) / 1024 if line else 0.0


def _own_peak_rss_mb() -> float:
    """This process's peak RSS: Linux's VmHWM, which starts afresh at exec (``ru_maxrss`` keeps
    the peak of the process that started this one, a child's fork of it included)."""
    return _status_mb("VmHWM:") or _peak_rss_mb(resource.RUSAGE_SELF)


def peak_memory_fresh(root: Path, workers: int, batch_size: int,
                      work_dir: Path | None) -> dict:
    """:func:`peak_memory` in a new Python process (this one may have generated the folder)."""
    import subprocess

    args = [sys.executable, __file__, "--measure-memory", str(root), "--workers", str(workers),
            "--batch-size", str(batch_size), *(["--work-dir", str(work_dir)] if work_dir else [])]
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise DataError(f"the measuring process failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)


def memory_table(record: dict) -> str:
    rss = record["peak_rss_mb"]
    return (f"{record['images']} images -> {'x'.join(map(str, record['image_shape']))}: scan + "
            f"decode {record['seconds']['build']:.1f} s, one pass {record['seconds']['pass']:.1f}"
            f" s; peak RSS {rss['process']:.0f} MB ({rss['before']:.0f} MB after the imports, "
            f"{rss['data_path']:.0f} MB more for the data; anonymous memory at most "
            f"{rss.get('anonymous', 0):.0f} MB, the rest the cache's file pages; "
            f"largest worker {rss['workers']:.0f} MB); limit {record['limit_mb']} MB: "
            f"{'under' if record['under_limit'] else 'OVER'}")


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
    p.add_argument("--mnist-folder", type=Path, metavar="DIR",
                   help="time the loaders on MNIST's train/test PNG folders in DIR (exported "
                        "there first when DIR is empty)")
    p.add_argument("--train-throughput", type=Path, metavar="DIR",
                   help="train experiment=mnist_cnn through data=mnist and through the MNIST "
                        "PNG folders in DIR (exported there first when DIR is empty)")
    p.add_argument("--steps", type=int, default=200, help="training steps a --train-throughput run")
    p.add_argument("--repeats", type=int, default=3, help="--train-throughput pairs of runs")
    p.add_argument("--peak-memory", type=Path, metavar="DIR",
                   help="peak RSS through scan, decode and one pass over --images generated "
                        "images in DIR (generated there first when DIR is empty)")
    p.add_argument("--images", type=int, default=200_000, help="images --peak-memory generates")
    p.add_argument("--measure-memory", type=Path, help=argparse.SUPPRESS)  # the fresh process
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        return _main(args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    if args.workers < 0 or args.batch_size < 1:
        raise DataError(f"--workers must be >= 0 and --batch-size >= 1, got {args.workers} "
                        f"and {args.batch_size}")
    if args.measure_memory is not None:  # stdout is the record, for peak_memory_fresh
        print(json.dumps(peak_memory(args.measure_memory, args.workers, args.batch_size,
                                     args.work_dir)))
        return 0
    if args.train_throughput is not None or args.peak_memory is not None:
        return _new_modes(args)
    if args.mnist_folder is not None:
        args.root = mnist_folder(args.mnist_folder, _data_dir(args), args.workers)
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
    record = run(args.root, args.workers, args.batch_size, args.size, args.channels,
                 args.work_dir)
    record["meta"] = {"root": str(args.root), "python": platform.python_version(),
                      "torch": torch.__version__, "cpus": os.cpu_count(),
                      "threads": torch.get_num_threads(), "machine": platform.machine()}
    print(table(record))
    _write_json(record, args.json)
    return 0


def _data_dir(args: argparse.Namespace) -> Path:
    return args.data_dir or Path(os.environ.get("DLEXP_DATA_DIR", "data"))


def _write_json(record: dict, path: Path | None) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n")


def _new_modes(args: argparse.Namespace) -> int:
    """--train-throughput and --peak-memory: a record each."""
    if args.train_throughput is not None:
        if args.steps < 1 or args.repeats < 1:
            raise DataError(f"--steps and --repeats must be at least 1, got {args.steps} and "
                            f"{args.repeats}")
        pngs = mnist_folder(args.train_throughput, _data_dir(args), args.workers)
        record = train_throughput(pngs, _data_dir(args), args.steps, args.repeats,
                                  args.work_dir)
        shown = train_table(record)
    else:
        if args.images < 1:
            raise DataError(f"--images must be at least 1, got {args.images}")
        root = pattern_folder(args.peak_memory, args.images, args.workers)
        record = peak_memory_fresh(root, args.workers, args.batch_size, args.work_dir)
        shown = memory_table(record)
    record["meta"] = {"python": platform.python_version(), "torch": torch.__version__,
                      "cpus": os.cpu_count(), "machine": platform.machine()}
    print(shown)
    _write_json(record, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
