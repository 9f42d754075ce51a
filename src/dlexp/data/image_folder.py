"""``data=image_folder data.root=DIR``: your own images, one subfolder per class (or
``DIR/train|val|test/<class>/``, or ``data.table=FILE`` with a path and a label column).

Before training, the folder is listed (:mod:`dlexp.data.folder`) and every image is read once,
in parallel worker processes: hashed and probed for the scan, and decoded in the same pass by
the loader predict uses too (:func:`dlexp.inputs.load_picture`), and kept resized as uint8 in a memory-mapped file in the
cache dir, keyed by the files (paths, sizes, mtimes) and the image settings: a later run
decodes nothing, and a folder larger than memory pages in from that file. Bad files end in one
``error:`` before training (``on_bad_file=error``) or are left out and listed in the run
directory (``skip``). Then it is :class:`~dlexp.data.arrays.ArraysDataModule`'s pipeline:
batches are uint8 index gathers, normalised and augmented on the device, with the training
split's per-channel statistics, which the checkpoint carries with the input spec."""

from __future__ import annotations

import functools
import io
import json
import logging
import mmap
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dlexp.data import folder, splits
from dlexp.data.arrays import normalize_arrays
from dlexp.data.augment import natural_augment, random_affine
from dlexp.data.folder import IMAGE_EXTENSIONS, Manifest
from dlexp.data.imdb import default_cache_dir
from dlexp.data.mnist import TensorDataModule
from dlexp.data.pooled import check_batch_sizes, check_choice
from dlexp.data.table import is_multilabel
from dlexp.data.tensor_loader import TensorBatchLoader
from dlexp.errors import DataError
from dlexp.inputs import RESIZE, WIDE_MODES, _check_size, _first_line, picture

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when load_picture's output changes: old decoded caches are rebuilt
STAT_ELEMENTS = 1 << 23  # pixel values per chunk of the statistics (uint8: 8 MB)
GRAY_MODES = {"1", "L", "LA", "La", *WIDE_MODES}
DEFAULT_SIZE = (128, 128)
OWN_SIZE_MAX = 256  # images that all share a size up to this are kept at it
MAPPED_BUDGET = 256 << 20  # bytes of the decoded cache a process keeps mapped (release_pages)
FAULT_AROUND = 64 << 10  # what reading one row may map: a page fault maps its neighbours too
BAD_FILE = ("error", "skip")
NORMALIZE = ("standard", "unit", "none", "imagenet")
# what torchvision's ImageNet weights were trained on (x/255 - mean) / std, in 0..255 units;
# a gray image gets the channels' average (ResNet-18 sums its RGB kernels for gray)
IMAGENET_MEAN, IMAGENET_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
AUGMENT = (False, True, "affine", "natural")
EXIF_HEADERS = {"JPEG", "MPO", "TIFF", "WEBP"}  # formats whose EXIF block precedes the pixels
SAMPLE = 64  # headers read first, on a cold start, to pick the size and channels to decode at


# ------------------------------------------------------------------------------ decoding
def probe(data: bytes) -> dict:
    """What an image's header says, without decoding it: its upright size (H, W) and
    whether it is grayscale. ValueError when it is not an image dlexp can read."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return header_info(im)
    except Image.DecompressionBombError:
        raise ValueError("image too large") from None
    except ValueError:
        raise
    except Exception as e:  # untrusted bytes: whatever the decoders raise means "unreadable"
        raise ValueError(f"cannot read image: {_first_line(e)}") from None


def header_info(im: Image.Image) -> dict:
    """:func:`probe`'s findings on an opened, not yet decoded image."""
    try:
        w, h = im.size
        # a PNG's getexif() decodes the whole image to look for a late eXIf chunk
        turned = im.format in EXIF_HEADERS and im.getexif().get(0x0112) in (5, 6, 7, 8)
        gray = im.mode in GRAY_MODES or (im.mode in ("P", "PA") and _gray_palette(im))
    except Exception as e:  # untrusted bytes: whatever the decoders raise means "unreadable"
        raise ValueError(f"cannot read image: {_first_line(e)}") from None
    _check_size((w, h))
    return {"size": [w, h] if turned else [h, w], "gray": gray}


probe.version = 1  # type: ignore[attr-defined]  # in the scan cache's key


def _gray_palette(im: Image.Image) -> bool:
    palette = im.getpalette() or []
    return all(palette[i] == palette[i + 1] == palette[i + 2]
               for i in range(0, len(palette) - 2, 3))


def _decode_chunk(out: str, shape: tuple[int, ...], rows: list[tuple[int, bytes]],
                  size: tuple[int, int], channels: int, resize: str
                  ) -> dict[int, tuple[dict | None, str | None]]:
    """Decode ``rows`` ((row, the file's bytes) pairs) into the memory-mapped ``out``;
    {row: (what :func:`probe` says of it, why it cannot be decoded or None)}, from the one
    parse of each file. Runs in a scan worker (or in this process) on the bytes it read."""
    images = np.memmap(out, np.uint8, "r+", shape=shape)
    found = {}
    for row, data in rows:
        info: dict = {}
        try:
            pixels = np.asarray(picture(io.BytesIO(data), size, channels, resize,
                                        lambda im, into=info: into.update(header_info(im))))
            images[row] = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
            found[row] = (info, None)
        except ValueError as e:
            found[row] = (info or None, str(e))
        except Exception as e:  # a decoder bug on hostile bytes: still this file's fault
            found[row] = (info or None, f"cannot read image: {_first_line(e)}")
    # no flush: an msync of the whole map per chunk; the page cache is shared with the reader
    return found


def _stems(manifest: Manifest, size: tuple[int, int], channels: int, resize: str
           ) -> tuple[str, str]:
    """(the key of the settings, the build's file stem: settings and files)."""
    settings = folder._cache_key(version=CACHE_VERSION, source=str(Path(manifest.source)
                                                                   .resolve()),
                                 size=list(size), channels=channels, resize=resize)
    return settings, f"{settings}-{folder._cache_key(files=manifest.identity())}"


def decoded_images(manifest: Manifest, cache_dir: Path, size: tuple[int, int], channels: int,
                   resize: str, workers: int | None = None, stale: Sequence[int] = ()
                   ) -> tuple[np.memmap, dict[int, str]]:
    """(images uint8 (N, C, H, W), memory-mapped from the cache dir, {row: why} for the files
    that could not be decoded). Rows follow ``manifest``; files it already knows are bad are
    not decoded (their rows stay zero and must not be used). Built once per set of files and
    settings; files unchanged since an earlier build of the same folder are copied from it.
    ``stale``: rows whose fingerprints the scan cache lacked; they are fingerprinted here, in
    the pass that decodes them (one read per file), before this returns."""
    shape = (len(manifest), channels, *size)
    where = cache_dir / "image_folder"
    settings, stem = _stems(manifest, size, channels, resize)
    meta_path, data_path = where / f"{stem}.json", where / f"{stem}.u8"
    meta = _read_meta(meta_path, shape, data_path)
    if meta is not None:
        folder.read_files(manifest, stale, cache_dir, probe, workers)
    else:
        meta = _build(manifest, where, stem, shape, size, channels, resize, workers, stale,
                      cache_dir)
        for old in where.glob(f"{settings}-*.json"):  # older builds of this folder
            if old.stem != stem:
                for stale in (old, old.with_suffix(".u8"), old.with_suffix(".files")):
                    stale.unlink(missing_ok=True)
    images = np.memmap(data_path, np.uint8, "c", shape=shape)  # "c": writable, never written
    return images, {int(k): v for k, v in meta["bad"].items()}


def _forget(manifest: Manifest, cache_dir: Path, size: tuple[int, int], channels: int,
            resize: str) -> None:
    """Delete the build of these files at these settings (a guess that proved wrong)."""
    stem = _stems(manifest, size, channels, resize)[1]
    for suffix in (".json", ".u8", ".files"):
        (cache_dir / "image_folder" / f"{stem}{suffix}").unlink(missing_ok=True)


def _read_meta(path: Path, shape: tuple[int, ...], data: Path) -> dict | None:
    """A finished build's record (written last), or None."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if meta.get("shape") != list(shape) or not data.is_file() or \
            data.stat().st_size != int(np.prod(shape)):
        return None
    return meta


def _build(manifest: Manifest, where: Path, stem: str, shape: tuple[int, ...],
           size: tuple[int, int], channels: int, resize: str, workers: int | None,
           stale: Sequence[int], cache_dir: Path) -> dict:
    try:
        where.mkdir(parents=True, exist_ok=True)
        tmp = where / f"{stem}.u8.{os.getpid()}.part"
        np.memmap(tmp, np.uint8, "w+", shape=shape).flush()
    except OSError as e:
        raise DataError(f"cannot write the decoded images to {where} ({e.strerror or e}): set "
                        "data.cache_dir to a writable folder") from None
    bad, todo = _copy_previous(manifest, where, stem, shape, tmp)
    todo = [i for i in todo if manifest.errors[i] is None]
    if todo:
        log.info("%s: decoding %d images to %dx%dx%d (data.resize=%s), once: %s",
                 manifest.source, len(todo), channels, *size, resize, where)
    decode = folder.OnRead(todo, functools.partial(_decode_chunk, str(tmp), shape, size=size,
                                                   channels=channels, resize=resize),
                           probes=True)
    folder.read_files(manifest, stale, cache_dir, probe, workers, decode)
    bad.update(decode.bad)
    tmp.replace(where / f"{stem}.u8")
    rels = {i: manifest.rel(i) for i in bad}
    # the files apart: a warm start reads the small record only, a rebuild reads both
    folder.write_atomic(where / f"{stem}.files", json.dumps(manifest.identity()))
    meta = {"shape": list(shape), "bad": bad,
            "bad_files": {rels[i]: why for i, why in bad.items()}}
    folder.write_atomic(where / f"{stem}.json", json.dumps(meta))
    return meta


def _copy_previous(manifest: Manifest, where: Path, stem: str, shape: tuple[int, ...],
                   tmp: Path) -> tuple[dict[int, str], list[int]]:
    """Rows of files unchanged since the latest earlier build of this folder and settings,
    copied into ``tmp``; returns their bad files and the rows still to decode."""
    settings = stem.split("-")[0]
    earlier = sorted((p for p in where.glob(f"{settings}-*.json") if p.stem != stem),
                     key=lambda p: p.stat().st_mtime)
    todo = list(range(len(manifest)))
    if not earlier:
        return {}, todo
    try:
        meta = json.loads(earlier[-1].read_text())
        files = json.loads(earlier[-1].with_suffix(".files").read_text())
        old = np.memmap(earlier[-1].with_suffix(".u8"), np.uint8, "r",
                        shape=tuple(meta["shape"]))
    except (OSError, ValueError, KeyError, TypeError):
        return {}, todo
    if tuple(old.shape[1:]) != shape[1:]:
        return {}, todo
    rows = {tuple(f): r for r, f in enumerate(files)}
    new = np.memmap(tmp, np.uint8, "r+", shape=shape)
    bad_before, bad, rest = meta.get("bad_files", {}), {}, []
    for i, ident in enumerate(manifest.identity()):
        r = rows.get(tuple(ident))
        if r is None:
            rest.append(i)
        elif ident[0] in bad_before:
            bad[i] = bad_before[ident[0]]
        else:
            new[i] = old[r]
    new.flush()
    log.info("%s: %d decoded images reused from the last build", manifest.source,
             len(manifest) - len(rest))
    return bad, rest


def _imagenet_statistics(channels: int) -> tuple[list[float], list[float]]:
    if channels == 3:
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    return [sum(IMAGENET_MEAN) / 3] * channels, [sum(IMAGENET_STD) / 3] * channels


# ------------------------------------------------------------------------------ loading
class RowBatchLoader(TensorBatchLoader):
    """Batches of (images, labels) gathered from one images tensor by row numbers: the parts
    are (rows, labels), so the images are never copied per split. ``pages``: the memory map
    the images are read from; when it is larger than ``MAPPED_BUDGET``, its pages are dropped
    whenever the rows read since the last drop may have mapped that much."""

    def __init__(self, images: torch.Tensor, part: tuple[torch.Tensor, torch.Tensor],
                 batch_size: int, pages: np.memmap | None = None, **kwargs) -> None:
        super().__init__(part, batch_size, **kwargs)
        self.images, self._mapped = images, 0
        self.pages = pages if over_budget(pages) else None
        self._per_row = max(FAULT_AROUND, images[0].numel() if len(images) else 0)

    def make_batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows, labels = super().make_batch(idx)
        if self.pages is not None:
            self._mapped += len(rows) * self._per_row
            if self._mapped >= MAPPED_BUDGET:
                release_pages(self.pages)
                self._mapped = 0
        return gather(self.images, rows), labels


def over_budget(pages: np.ndarray | None) -> bool:
    """Whether a process should drop the map's pages as it reads: a cache within
    ``MAPPED_BUDGET`` stays mapped (dropping it would only cost page faults)."""
    return pages is not None and pages.nbytes > MAPPED_BUDGET


def release_pages(images: np.ndarray) -> None:
    """Drop the decoded cache's pages from this process's resident memory. They stay in the
    kernel's page cache (reading one again is a minor fault), so an epoch over a cache larger
    than RAM streams through it instead of keeping all of it resident. The map is private
    and never written: nothing is lost."""
    mapped = getattr(images, "_mmap", None)  # np.memmap's own mmap.mmap
    if isinstance(mapped, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        mapped.madvise(mmap.MADV_DONTNEED)


def gather(images: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``images[rows]``. From the memory map by numpy's indexing: torch's threaded
    ``index_select`` faults the map's pages in from several threads at once, many times
    slower the first time the pages are read."""
    if images.device.type != "cpu":
        return images.index_select(0, rows)
    return torch.from_numpy(images.numpy()[rows.numpy()])


class ImageFolderDataModule(TensorDataModule):
    """Train/val/test from a folder of images (or a table naming them): the given split, or
    a seeded stratified one (``val_size``, ``test_size``), or fold ``fold`` of ``folds``.
    Parts are (rows, labels): rows into :attr:`images`, the decoded uint8 (N, C, H, W)."""

    modality = "image"

    def __init__(
        self,
        root: str | None = None,
        table: str | None = None,
        path_column: str = "path",
        label_column: str | Sequence[str] = "label",
        label_sep: str | None = None,
        threshold: float = 0.5,
        split_column: str | None = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        image_size: Sequence[int] | None = None,  # or one number (square)
        channels: int | None = None,
        resize: str = "squish",
        on_bad_file: str = "error",
        val_size: int | float = 0.1,
        test_size: int | float = 0.1,
        folds: int | None = None,
        fold: int = 0,
        split_file: str | None = None,
        seed: int = 0,
        num_labeled: int | None = None,
        batch_size: int = 64,
        eval_batch_size: int = 500,
        normalize: str = "standard",
        augment: bool | str = False,
        max_shift: float = 0.1,
        max_degrees: float = 10.0,
        unlabeled_ratio: float | None = None,
        sampler: str | None = None,
        on_device: bool | str = "auto",
        workers: int | None = None,
        cache_dir: str | None = None,
        data_dir: str | None = None,
        run_dir: str | None = None,
        test_only: bool = False,
    ) -> None:
        super().__init__(unlabeled_ratio, sampler)
        check_batch_sizes(batch_size, eval_batch_size)
        for key, value, choices in (("resize", resize, RESIZE), ("on_bad_file", on_bad_file,
                                    BAD_FILE), ("normalize", normalize, NORMALIZE),
                                    ("augment", augment, AUGMENT), ("channels", channels,
                                    (None, 1, 3)), ("on_device", on_device, ("auto", True, False))):
            check_choice(key, value, choices)
        self.requested_size = _checked_size(image_size)
        self.resize, self.on_bad_file, self.normalize = resize, on_bad_file, normalize
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.test_size, self.folds, self.fold = val_size, test_size, folds, fold
        self.seed, self.num_labeled, self.on_device = seed, num_labeled, on_device
        self.augment, self.max_shift, self.max_degrees = augment, max_shift, max_degrees
        self.pin_memory = False  # batches are gathered from the memory map, not pinned whole
        self.workers = workers
        base = Path(data_dir).expanduser() if data_dir else Path("data")
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir(base)
        self.run_dir = Path(run_dir) if run_dir else None
        self.test_only = test_only
        self.label_sep, self.threshold = label_sep, threshold
        scanned = self._scan(root, table, base, extensions, path_column, label_column,
                             split_column)
        self.multilabel = scanned.multilabel
        if not test_only:  # all of it test data (dlexp-eval): no training split to check
            folder.check_classes(scanned)  # before reading anything
        elif len(scanned) == 0:
            raise DataError(f"{scanned.source}: no image files found")
        images, undecodable = self._read_images(scanned, channels)
        self.images, self._pages = torch.from_numpy(images), images
        row_of = {r: i for i, r in enumerate(scanned.rels)}
        why = {scanned.rels[i]: e for i, e in folder.bad_files(scanned).items()}
        why.update((scanned.rels[i], e) for i, e in undecodable.items())
        self.manifest = self._usable(self._with_split_lists(scanned, split_file), why)
        self.rows = torch.tensor([row_of[r] for r in self.manifest.rels], dtype=torch.long)
        self.class_names = self.manifest.classes
        self.num_classes = len(self.class_names)
        self.input_shape = (self.channels, *self.image_size)
        self._setup_splits()
        self._ready = True

    # ---------------------------------------------------------------- the files
    def _scan(self, root: str | None, table: str | None, base: Path,
              extensions: Sequence[str], path_column: str, label_column: str,
              split_column: str | None) -> Manifest:
        if root is not None and table is not None:
            raise ValueError("data.root and data.table: give one of them, not both")
        if root is None and table is None:
            raise ValueError("data.root is required: data.root=DIR (one subfolder per class), "
                             "or data.table=FILE (a path and a label column)")
        if table is not None:
            return folder.from_table(_resolve(table, base), path_column, label_column,
                                     split_column, label_sep=self.label_sep, read=False)
        if is_multilabel(label_column, self.label_sep):
            raise ValueError("data.label_sep and a list of data.label_column are for tables: "
                             "give data.table=FILE (folders are single-label)")
        return folder.scan(_resolve(root, base), list(extensions), read=False)

    def _read_images(self, manifest: Manifest, channels: int | None
                     ) -> tuple[np.memmap, dict[int, str]]:
        """Fingerprint and decode every image (what the caches hold is not read again), and
        set ``image_size`` and ``channels``. A cold start reads each file once: hashed,
        probed and decoded in one pass, at the size and channels that the cached headers, or
        on a cold start a sample of them (read twice), suggest when they are not set; should the
        whole folder disagree (a lone odd image the sample missed), the images are decoded
        again at the right ones."""
        stale = folder.cached_fingerprints(manifest, self.cache_dir, probe)
        sampled: list[int] = []
        if len(stale) == len(manifest) and (self.requested_size is None or channels is None):
            sampled = stale[::max(1, len(stale) // SAMPLE)][:SAMPLE]  # spread over the classes
            folder.read_files(manifest, sampled, None, probe)
        rest = sorted(set(stale) - set(sampled))
        guess = self._image_spec(manifest, channels, quiet=bool(rest))
        images, bad = decoded_images(manifest, self.cache_dir, *guess, self.resize,
                                     self.workers, rest)
        if sampled and not rest:
            folder.save_fingerprints(manifest, self.cache_dir, probe)
        self.image_size, self.channels = self._image_spec(manifest, channels, quiet=not rest)
        if (self.image_size, self.channels) != guess:
            log.info("%s: the sampled headers suggested %d channels of %dx%d, the folder "
                     "holds otherwise: decoding again", manifest.source, guess[1], *guess[0])
            del images
            _forget(manifest, self.cache_dir, *guess, self.resize)
            images, bad = decoded_images(manifest, self.cache_dir, self.image_size,
                                         self.channels, self.resize, self.workers)
        return images, bad

    def _with_split_lists(self, manifest: Manifest, split_file: str | None) -> Manifest:
        """The split written by an earlier run: ``data.split_file``, else this run
        directory's own (a requeued or resumed run in place)."""
        self._lists = None
        if self.test_only:
            return manifest
        if split_file is not None:
            self._lists = folder.split_lists_in(split_file)
            if self._lists is None:
                raise DataError(f"data.split_file: no train.txt in {split_file} or "
                                f"{Path(split_file) / folder.SPLIT_FOLDER}")
        elif self.run_dir is not None:
            self._lists = folder.split_lists_in(self.run_dir / folder.SPLIT_FOLDER)
        if self._lists is None:
            return manifest
        if self.folds is not None:
            log.info("data.folds: the split comes from %s", self._lists)
        return folder.apply_split_lists(manifest, self._lists)

    def _usable(self, manifest: Manifest, why: dict[str, str]) -> Manifest:
        """``manifest`` without its bad files (``on_bad_file=skip``, listed in the run
        directory), or one error naming them; the class checks again on what is left."""
        bad = {i: why[r] for i, r in enumerate(manifest.rels) if r in why}
        if bad and self.on_bad_file == "error":
            raise folder.bad_files_error(manifest, bad)
        if bad:
            folder.write_bad_files(self.run_dir, manifest, bad)
            manifest = manifest.subset([i for i in range(len(manifest)) if i not in bad])
            if not self.test_only:
                folder.check_classes(manifest)
        return manifest

    def _image_spec(self, manifest: Manifest, channels: int | None, quiet: bool = False
                    ) -> tuple[tuple[int, int], int]:
        """``image_size`` and ``channels`` as set, else what the images (those probed so far)
        hold: their size when they all share one (up to 256 a side, else 128x128); gray when
        all are."""
        infos = [info for info in manifest.info if info]
        if channels is None:
            channels = 1 if infos and all(info["gray"] for info in infos) else 3
        size = self.requested_size
        if size is None:
            sizes = Counter(tuple(info["size"]) for info in infos)
            own = next(iter(sizes)) if len(sizes) == 1 else None
            size = own if own and max(own) <= OWN_SIZE_MAX else DEFAULT_SIZE
            log.log(logging.DEBUG if quiet else logging.INFO, "%s: images of %dx%d (H x W)%s, %d channel%s; data.image_size=[H,W] and "
                     "data.channels change them", manifest.source, *size,
                     " (their own size)" if size == own else
                     f" ({len(sizes)} sizes found)", channels, "s" if channels > 1 else "")
        return size, channels

    # ---------------------------------------------------------------- splits
    def _setup_splits(self) -> None:
        if self.test_only:
            self._all_test()
            return
        m = self.manifest
        parts = folder.split(m, self.val_size, self.test_size, self.seed, self.folds, self.fold)
        y = m.targets()
        train, pool = splits.labeled_and_pool(y, parts["train"], self.num_labeled, self.seed)
        if len(parts["test"]) == 0:
            raise ValueError("no test data: add a test folder (root/test/<class>/) or set "
                             "data.test_size > 0")
        folder.warn_duplicates(m, parts)
        folder.log_counts(m, {"train": train, "val": parts["val"], "test": parts["test"]})
        if self._lists != (self.run_dir / folder.SPLIT_FOLDER if self.run_dir else None):
            folder.write_split(self.run_dir, m, {"train": train, "val": parts["val"],
                                                 "test": parts["test"], "unlabeled": pool})
        self.train_set = (self.rows[train], y[train])
        self.val_set = (self.rows[parts["val"]], y[parts["val"]])
        self.test_set = (self.rows[parts["test"]], y[parts["test"]])
        self.unlabeled_set = (self.rows[pool], y[pool])  # labels only for evaluation
        self.split_indices = {"train": train, "val": parts["val"], "test": parts["test"],
                              "unlabeled": pool}
        self.mean, self.std = self._statistics(self.train_set[0])

    def _all_test(self) -> None:
        """Every file is test data (``test_only``: a new folder to evaluate a checkpoint on)."""
        y = self.manifest.targets()
        every, none = torch.arange(len(y)), torch.zeros(0, dtype=torch.long)
        self.train_set = self.val_set = self.unlabeled_set = (self.rows[none], y[none])
        self.test_set = (self.rows[every], y[every])
        self.split_indices = {"train": none, "val": none, "test": every, "unlabeled": none}
        self.mean, self.std = self._statistics(self.test_set[0])  # until use_pipeline

    def use_pipeline(self, info: dict) -> None:
        """Normalise with a checkpoint's training statistics (``info``: its data description),
        to evaluate it on these images (``dlexp-eval CKPT data.root=NEWDIR``); refused when
        they are not read into the shape its network takes."""
        trained = tuple(info.get("input_shape") or ())
        if info.get("modality") != "image" or len(trained) != 3:
            raise DataError(f"this checkpoint's model does not take images "
                            f"(data={info.get('name')}); evaluate it on data of its own kind")
        if self.input_shape != trained:
            raise DataError(f"these images are read as {'x'.join(map(str, self.input_shape))} "
                            f"(C x H x W) but the checkpoint's model takes "
                            f"{'x'.join(map(str, trained))}: set data.channels and "
                            "data.image_size as in training")
        if self.multilabel and self.test_only and info.get("multilabel"):
            self._use_labels([str(c) for c in info["class_names"]])
        self.mean, self.std = list(info["mean"]), list(info["std"])

    def _use_labels(self, names: list[str]) -> None:
        """A new multi-label table under test takes the checkpoint's labels (in its order):
        it may lack some of them, but not hold others."""
        unknown = [n for n in self.class_names if n not in names]
        if unknown:
            raise DataError(f"{self.manifest.source}: labels {', '.join(map(repr, unknown))} "
                            f"are not the checkpoint's ({', '.join(names)})")
        self.manifest.label_names = self.class_names = names
        self.num_classes = len(names)
        self._all_test()

    def _statistics(self, rows: torch.Tensor) -> tuple[list[float], list[float]]:
        """Per channel, of the training images (read in chunks: the images may not fit in
        memory); a constant channel gets std 1."""
        c = self.channels
        if self.normalize == "imagenet":
            return _imagenet_statistics(c)
        if self.normalize != "standard":
            return [0.0] * c, [255.0 if self.normalize == "unit" else 1.0] * c
        counts = torch.zeros(c, 256, dtype=torch.float64)  # how often each uint8 value is
        per_chunk = max(1, STAT_ELEMENTS // max(1, self.images[0].numel()))  # bounded memory
        stream = over_budget(self._pages)  # a pass over the whole training split
        for chunk in rows.sort().values.split(per_chunk):
            x = gather(self.images, chunk)
            if stream:
                release_pages(self._pages)
            for k in range(c):
                counts[k] += torch.bincount(x[:, k].flatten(), minlength=256).double()
        values = torch.arange(256, dtype=torch.float64)
        total = counts.sum(1).clamp(min=1)
        mean = counts @ values / total
        std = (counts @ values.square() / total - mean.square()).clamp(min=0).sqrt()
        return mean.tolist(), torch.where(std > 1e-6, std, 1.0).tolist()

    # ---------------------------------------------------------------- batches
    def _loader(self, part: tuple[torch.Tensor, torch.Tensor], train: bool,
                batch_size: int | None = None) -> RowBatchLoader:
        rank, world = self.rank_and_world()
        images = self._images_on(self.data_device((self.images,)))
        rows, labels = (t.to(images.device) for t in part)
        size = batch_size or (self.batch_size if train else self.eval_batch_size)
        pages = self._pages if images is self.images else None  # not a copy on a device
        return RowBatchLoader(images, (rows, labels), size, pages, shuffle=train,
                              seed=self.seed, rank=rank, world_size=world)

    def _images_on(self, device: torch.device | None) -> torch.Tensor:
        """The images where training reads them: the memory map, or one copy on the
        accelerator that every loader shares."""
        if device is None:
            return self.images
        if getattr(self, "_device_images", None) is None or \
                self._device_images.device != device:
            self._device_images = self.images.to(device)
        return self._device_images

    def _prepare(self, batch: tuple) -> tuple:
        x, *rest = batch
        if self.augment and self.trainer is not None and self.trainer.training:
            x = natural_augment(x.float(), None) if self.augment == "natural" else \
                random_affine(x.float(), None, self.max_shift, self.max_degrees)
        return (self._normalize(x), *rest)

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        return normalize_arrays(x, self.mean, self.std)

    def describe(self) -> dict:
        """What inference needs to reproduce the input pipeline, stored in checkpoints."""
        shape = list(self.input_shape)
        return {"name": "image_folder", "modality": "image", "mean": self.mean,
                "std": self.std, "class_names": self.class_names,
                "num_classes": self.num_classes, "image_size": list(self.image_size),
                "channels": self.channels, "resize": self.resize, "input_shape": shape,
                "dtype": "uint8", "net_kwargs": {"in_shape": shape,
                                                 "num_classes": self.num_classes},
                "multilabel": self.multilabel, "threshold": self.threshold}


def _checked_size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    pair = [size, size] if isinstance(size, int) else list(size)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                 for v in pair):
        raise ValueError(f"data.image_size must be [height, width] or one number (square), "
                         f"in pixels, got {size}")
    return pair[0], pair[1]


def _resolve(path: str, base: Path) -> Path:
    """``path`` as given (from the working folder), else under the data folder."""
    given = Path(path).expanduser()
    if given.exists() or given.is_absolute():
        return given
    under = base / given
    return under if under.exists() else given

