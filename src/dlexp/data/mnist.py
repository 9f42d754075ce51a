"""MNIST as a LightningDataModule over the four raw IDX files, held in memory as uint8."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from dlexp.data import splits
from dlexp.data.augment import random_affine
from dlexp.data.download import download
from dlexp.data.idx import read_idx
from dlexp.data.pooled import PooledDataModule, check_batch_sizes, check_choice
from dlexp.data.tensor_loader import TensorBatchLoader
from dlexp.errors import ConfigError, DataError

MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
# md5 of the official .gz files, as torchvision checks them.
FILES = {
    "train-images-idx3-ubyte": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", 2051),
    "train-labels-idx1-ubyte": ("d53e105ee54ea40749a09fcbcd1e9432", 2049),
    "t10k-images-idx3-ubyte": ("9fb629c4189551a2d022fa330f9573f3", 2051),
    "t10k-labels-idx1-ubyte": ("ec29112dd5afa0611ce80d1b7f02629c", 2049),
}
MEAN, STD = 0.1307, 0.3081
# data.normalize -> (mean, std) of x/255: the inputs the network sees are (x/255 - mean) / std
NORMALIZE = {
    "standard": (MEAN, STD),   # the training set's statistics (default)
    "unit": (0.0, 1.0),        # x / 255, as most Keras tutorials do
    "none": (0.0, 1 / 255),    # raw 0..255 floats, as the course's MLP and CNN code does
}


def default_root() -> str:
    return os.environ.get("DLEXP_DATA_DIR", "data")


class TensorDataModule(PooledDataModule):
    """Data held in memory as whole tensors (uint8 images travel as they are): batches are
    index slices (:class:`TensorBatchLoader`), on the accelerator when it fits, normalised (and
    augmented) on the device. Subclasses set the sizes, ``augment`` and its ranges, and
    ``mean``/``std`` (or their own :meth:`_normalize`)."""

    batch_size: int
    eval_batch_size: int
    seed: int
    pin_memory: bool
    on_device: bool | str
    augment: bool
    max_shift: float
    max_degrees: float
    mean: float
    std: float

    def _loader(self, tensors: tuple[torch.Tensor, ...], train: bool,
                batch_size: int | None = None) -> TensorBatchLoader:
        rank, world = self.rank_and_world()
        device = self.data_device(tensors)
        if device is not None:  # batches are index slices there: no copy per step
            tensors = tuple(t.to(device) for t in tensors)
        elif self.pin_memory and torch.cuda.is_available():
            tensors = tuple(t.pin_memory() for t in tensors)
        size = batch_size or (self.batch_size if train else self.eval_batch_size)
        return TensorBatchLoader(tensors, size,
                                 shuffle=train, seed=self.seed, rank=rank, world_size=world)

    def data_device(self, tensors: tuple[torch.Tensor, ...]) -> torch.device | None:
        """Where the data lives for training: the accelerator's memory (``on_device``: true,
        or auto on a GPU when the data takes at most a quarter of its free memory), else None
        (host memory, batches copied one by one)."""
        if self.trainer is None or self.on_device is False:
            return None
        device = self.trainer.strategy.root_device
        if self.on_device is True:
            return device
        if device.type != "cuda":
            return None
        size = sum(t.numel() * t.element_size() for t in tensors)
        return device if size <= torch.cuda.mem_get_info(device)[0] / 4 else None

    def _with_pool_rows(self, part: tuple, idx: torch.Tensor, labels: torch.Tensor) -> tuple:
        return (torch.cat([part[0], self.unlabeled_set[0][idx]]), torch.cat([part[1], labels]))

    def predict_dataloader(self) -> TensorBatchLoader:
        """The test set in file order (eval.py's predictions.csv)."""
        return self._loader(self.test_set, train=False)

    def unlabeled_dataloader(self) -> TensorBatchLoader:
        return self._loader(self.unlabeled_set, train=False)

    def on_after_batch_transfer(self, batch: tuple, dataloader_idx: int) -> tuple:
        """Normalise (and augment) on the device, on whole batches: uint8 travels, floats don't.
        The unlabeled stream is only normalised: its views are the training method's business."""
        if isinstance(batch, dict):
            return {k: (self._prepare(b) if k == "labeled"
                        else (self._normalize(b[0]), *b[1:]))
                    for k, b in batch.items()}
        return self._prepare(batch)

    def _prepare(self, batch: tuple) -> tuple:
        x, *rest = batch
        if self.augment and self.trainer is not None and self.trainer.training:
            # warp raw intensities, so the pixels shifted in are black like MNIST's background,
            # not the mean grey that zero padding would give after standardising
            x = random_affine(x.float(), None, self.max_shift, self.max_degrees)
        return (self._normalize(x), *rest)

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        return normalize(x, self.mean, self.std)


class MNISTDataModule(TensorDataModule):
    """Train/val from the 60k training set (seeded shuffle), test = the official 10k.

    Hooks for the other experiments: ``num_labeled`` (stratified labeled subset, the rest of
    train is the unlabeled pool), ``classes`` (a class subset, relabelled 0..k-1) and
    ``imbalance`` (an exponential class profile on train, for class-weighted losses).
    """

    modality = "image"

    def __init__(
        self,
        root: str | None = None,
        download: bool = True,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_size: int | float = 5000,
        seed: int = 0,
        num_labeled: int | None = None,
        classes: Sequence[int] | None = None,
        imbalance: float | None = None,
        augment: bool = False,
        max_shift: float = 0.1,
        max_degrees: float = 10.0,
        pin_memory: bool = False,
        unlabeled_ratio: float | None = None,
        sampler: str | None = None,
        normalize: str = "standard",
        on_device: bool | str = "auto",
    ) -> None:
        super().__init__(unlabeled_ratio, sampler)
        check_batch_sizes(batch_size, eval_batch_size)
        check_choice("normalize", normalize, NORMALIZE)
        self.normalize = normalize
        self.mean, self.std = NORMALIZE[normalize]
        self.root = Path(root or default_root()).expanduser()
        self.download, self.batch_size, self.eval_batch_size = download, batch_size, eval_batch_size
        self.val_size, self.seed, self.num_labeled = val_size, seed, num_labeled
        self.classes = sorted(int(c) for c in classes) if classes is not None else list(range(10))
        if not self.classes or any(not 0 <= c <= 9 for c in self.classes) \
                or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"data.classes must be distinct digits 0-9, got {classes}")
        if len(self.classes) < 2:
            raise ValueError(f"data.classes needs at least 2 digits to classify, got {classes}")
        self.imbalance, self.augment = imbalance, augment
        if not 0 <= max_shift < 1 or not 0 <= max_degrees <= 180:
            raise ValueError(f"data.max_shift must be in [0, 1) and data.max_degrees in "
                             f"[0, 180], got {max_shift} and {max_degrees}")
        self.max_shift, self.max_degrees, self.pin_memory = max_shift, max_degrees, pin_memory
        check_choice("on_device", on_device, ("auto", True, False))
        self.on_device = on_device
        self.input_shape = (1, 28, 28)
        self.num_classes = len(self.classes)
        self.class_names = [str(c) for c in self.classes]

    # ---------------------------------------------------------------- files
    @property
    def raw_dir(self) -> Path:
        return self.root / "MNIST" / "raw"

    def _find(self, name: str) -> Path | None:
        for candidate in (self.raw_dir / name, self.raw_dir / f"{name}.gz"):
            if candidate.is_file():
                return candidate
        return None

    def prepare_data(self) -> None:
        missing = [n for n in FILES if self._find(n) is None]
        if not missing:
            return
        if not self.download:
            raise DataError(self._missing_message(missing, "data.download=false"))
        for name in missing:
            urls = [f"{m}{name}.gz" for m in MIRRORS]
            try:
                download(urls, self.raw_dir / f"{name}.gz", FILES[name][0])
            except DataError as e:
                raise DataError(self._missing_message(missing, str(e))) from None

    def _missing_message(self, missing: list[str], why: str) -> str:
        return (f"MNIST files missing in {self.raw_dir.resolve()}: {', '.join(missing)} ({why}).\n"
                f"Put the four *-ubyte[.gz] files there, or point data.root (or $DLEXP_DATA_DIR) "
                f"at a folder holding MNIST/raw/.")

    def _read(self, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
        paths = [self._find(f"{prefix}-{kind}") for kind in ("images-idx3-ubyte",
                                                              "labels-idx1-ubyte")]
        if None in paths:
            self.prepare_data()  # raises the explanatory error when the files cannot be had
            paths = [self._find(f"{prefix}-{kind}") for kind in ("images-idx3-ubyte",
                                                                  "labels-idx1-ubyte")]
        x, y = read_idx(paths[0], 2051), read_idx(paths[1], 2049)
        if len(x) != len(y):
            raise DataError(f"{paths[0].name} has {len(x)} images but {paths[1].name} has "
                            f"{len(y)} labels; one of them is corrupt")
        if len(y) and int(y.max()) > 9:
            bad = int(y.argmax())
            raise DataError(f"{paths[1]} holds label {int(y[bad])} at position {bad}, outside "
                            "the digits 0-9: the file is corrupt or not MNIST")
        return x.unsqueeze(1), y.long()

    # ---------------------------------------------------------------- splits
    def _setup_splits(self) -> None:
        x, y = self._select_classes(*self._read("train"))
        n_val = splits.val_count(self.val_size, len(y))
        train_idx, val_idx = splits.shuffled_split(len(y), n_val, self.seed)
        if self.imbalance is not None:
            train_idx = train_idx[splits.imbalance(y[train_idx], self.imbalance, self.seed)]
        train_idx, unlabeled_idx = splits.labeled_and_pool(y, train_idx, self.num_labeled,
                                                           self.seed)
        self.train_set = (x[train_idx], y[train_idx])
        self.val_set = (x[val_idx], y[val_idx])
        self.unlabeled_set = (x[unlabeled_idx], y[unlabeled_idx])  # labels only for evaluation
        self.test_set = self._select_classes(*self._read("t10k"))
        self.split_indices = {"train": train_idx, "val": val_idx, "unlabeled": unlabeled_idx}

    def _select_classes(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.classes == list(range(10)):
            return x, y
        keep = torch.isin(y, torch.tensor(self.classes))
        lut = torch.full((10,), -1, dtype=torch.long)
        lut[self.classes] = torch.arange(len(self.classes))
        return x[keep], lut[y[keep]]

    def use_pipeline(self, info: dict) -> None:
        """Normalise as a checkpoint's training did (``info``: its data description), to
        evaluate it here (``dlexp-eval CKPT data=mnist``)."""
        if info.get("name") != "mnist":
            raise ConfigError(f"data=mnist cannot read digits as the training of this "
                              f"data={info.get('name')} checkpoint read its inputs; evaluate "
                              "it on data of its own kind")
        self.mean, self.std = info["mean"], info["std"]

    def describe(self) -> dict:
        """What inference needs to reproduce the input pipeline, stored in checkpoints."""
        return {"name": "mnist", "modality": self.modality, "mean": self.mean, "std": self.std,
                "class_names": self.class_names, "num_classes": self.num_classes,
                "net_kwargs": self.net_kwargs()}

    def net_kwargs(self) -> dict:
        """What a network must be told about this data: input shape and class count."""
        return {"in_shape": list(self.input_shape), "num_classes": self.num_classes}


def normalize(x: torch.Tensor, mean: float = MEAN, std: float = STD) -> torch.Tensor:
    """uint8 images in [0, 255] to floats ``(x/255 - mean) / std``; by default standardised
    with the MNIST training statistics."""
    return x.to(torch.float32, copy=True).mul_(1 / (255 * std)).sub_(mean / std)
