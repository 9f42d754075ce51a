"""``data=arrays data.path=FILE.npz``: your own data, as ``keras.datasets.*.load_data()`` gives
it and ``np.savez`` writes it: ``x_train, y_train`` and optionally ``x_val, y_val, x_test,
y_test``. Images ``(N, H, W)`` or ``(N, H, W, C)`` (Keras' channels-last layout) go to the CNN
or the MLP, features ``(N, D)`` to the MLP. Labels are integers or strings, sorted into
classes. A missing validation or test part is a seeded, stratified split of the training
arrays. Everything is checked when the module is built, before training."""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from dlexp.data import splits
from dlexp.data.mnist import TensorDataModule
from dlexp.data.pooled import check_batch_sizes, check_choice
from dlexp.errors import ConfigError, DataError

PARTS = ("train", "val", "test")
KEYS = tuple(f"{v}_{p}" for p in PARTS for v in ("x", "y"))
NORMALIZE = ("standard", "unit", "none")


def resolve(path: str, root: str | None) -> Path:
    """``path`` as given (from the working folder), else under ``root`` (the data folder)."""
    given = Path(path).expanduser()
    if given.is_file() or given.is_absolute() or root is None:
        return given
    under = Path(root).expanduser() / given
    return under if under.is_file() else given


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file, never unpickling (``allow_pickle=False``)."""
    if not path.is_file():
        raise DataError(f"data.path: no such file {path}")
    if not zipfile.is_zipfile(path):  # np.load would try to unpickle it
        raise DataError(f"cannot read {path} as an .npz file: it is not one (np.savez writes "
                        "them)")
    try:
        with np.load(path, allow_pickle=False) as f:
            found = {k: f[k] for k in f.files}
    except ValueError as e:
        if "pickle" in str(e):
            raise DataError(f"{path} holds Python objects (pickled), which dlexp does not load; "
                            "save plain numeric or string arrays with np.savez") from None
        raise DataError(f"cannot read {path} as an .npz file: {e}") from None
    except Exception as e:
        raise DataError(f"cannot read {path} as an .npz file: {e}") from None
    return found


def checked_parts(arrays: Mapping[str, np.ndarray], source: str
                  ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{part: (x, y)}`` for the parts present, each pair checked: the keys, lengths, shapes,
    finite inputs, and label types. ``source`` names the data in messages."""
    unknown = sorted(set(arrays) - set(KEYS))
    if unknown:
        raise DataError(f"{source}: unknown arrays {', '.join(unknown)}; expected "
                        f"{', '.join(KEYS)} (x_val/y_val and x_test/y_test are optional)")
    parts = {}
    for part in PARTS:
        x, y = arrays.get(f"x_{part}"), arrays.get(f"y_{part}")
        if x is None and y is None and part != "train":
            continue
        if x is None or y is None:
            missing = f"x_{part}" if x is None else f"y_{part}"
            raise DataError(f"{source}: {missing} is missing (x_{part} and y_{part} go together)")
        parts[part] = (_checked_x(np.asarray(x), f"x_{part}", source),
                       _checked_y(np.asarray(y), f"y_{part}", source))
        if len(parts[part][0]) != len(parts[part][1]):
            raise DataError(f"{source}: x_{part} has {len(x)} samples but y_{part} has "
                            f"{len(y)} labels")
    shape = parts["train"][0].shape[1:]
    for part, (x, _) in parts.items():
        if x.shape[1:] != shape:
            raise DataError(f"{source}: x_{part} samples have shape {x.shape[1:]}, x_train's "
                            f"have {shape}")
    return parts


def _checked_x(x: np.ndarray, name: str, source: str) -> np.ndarray:
    if x.ndim not in (2, 3, 4):
        raise DataError(f"{source}: {name} has shape {x.shape}; expected images (N, H, W) or "
                        "(N, H, W, C), or features (N, D)")
    if len(x) == 0:
        raise DataError(f"{source}: {name} is empty")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
            or x.dtype == bool):
        raise DataError(f"{source}: {name} must hold numbers, got {x.dtype}")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        bad = int(np.argwhere(~np.isfinite(x))[0][0])
        raise DataError(f"{source}: {name} holds NaN or infinite values (first in sample {bad})")
    return x


def _checked_y(y: np.ndarray, name: str, source: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:  # keras.datasets.cifar10 gives (N, 1)
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{source}: {name} has shape {y.shape}; expected one label per sample, "
                        "(N,) (class numbers or names, not one-hot)")
    if y.dtype.kind in "US":
        return y.astype(str)
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or (y != np.round(y)).any():
            raise DataError(f"{source}: {name} holds labels that are not whole numbers")
        return y.astype(np.int64)
    if y.dtype.kind not in "iub":
        raise DataError(f"{source}: {name} must hold integers or strings, got {y.dtype}")
    return y.astype(np.int64)


def class_names(parts: dict[str, tuple[np.ndarray, np.ndarray]], source: str) -> list:
    """The training labels, sorted (numbers by value, names alphabetically); every label of
    the other parts must be one of them."""
    names = np.unique(parts["train"][1])
    if len(names) < 2:
        raise DataError(f"{source}: y_train holds one class ({names.tolist()[0]!r}); classifying needs "
                        "at least 2")
    for part, (_, y) in parts.items():
        unseen = np.setdiff1d(np.unique(y), names)
        if part != "train" and len(unseen):
            raise DataError(f"{source}: y_{part} holds label {unseen.tolist()[0]!r}, which y_train does "
                            f"not have: the model could never predict it")
    return names.tolist()


def as_tensor(x: np.ndarray) -> torch.Tensor:
    """Inputs in the networks' layout: images (N, C, H, W), features (N, D); uint8 stays uint8
    (normalised on the device, whole batches at a time), anything else becomes float32."""
    t = torch.from_numpy(np.ascontiguousarray(x if x.dtype == np.uint8 else x.astype(np.float32)))
    if t.ndim == 3:
        return t.unsqueeze(1)
    return t.permute(0, 3, 1, 2).contiguous() if t.ndim == 4 else t


class ArraysDataModule(TensorDataModule):
    """Train/val/test from in-memory arrays (an ``.npz`` file): the parts given, the others
    stratified splits of the training arrays. Normalisation statistics come from the training
    split; ``num_labeled`` keeps a stratified labeled subset, the rest is the unlabeled pool."""

    modality = "image"  # what the MLP and CNN take; feature arrays describe themselves as such

    def __init__(
        self,
        path: str,
        root: str | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_size: int | float = 0.1,
        test_size: int | float = 0.1,
        seed: int = 0,
        num_labeled: int | None = None,
        normalize: str = "standard",
        augment: bool = False,
        max_shift: float = 0.1,
        max_degrees: float = 10.0,
        pin_memory: bool = False,
        unlabeled_ratio: float | None = None,
        sampler: str | None = None,
        on_device: bool | str = "auto",
    ) -> None:
        super().__init__(unlabeled_ratio, sampler)
        check_batch_sizes(batch_size, eval_batch_size)
        check_choice("normalize", normalize, NORMALIZE)
        check_choice("on_device", on_device, ("auto", True, False))
        self.path = str(resolve(path, root).resolve())
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.test_size, self.seed = val_size, test_size, seed
        self.num_labeled, self.normalize, self.pin_memory = num_labeled, normalize, pin_memory
        self.augment, self.max_shift, self.max_degrees = augment, max_shift, max_degrees
        self.on_device = on_device
        parts = checked_parts(read_npz(Path(self.path)), self.path)
        self.images = parts["train"][0].ndim > 2
        if augment and not self.images:
            raise ValueError("data.augment shifts and rotates images; these arrays are features")
        names = class_names(parts, self.path)
        self.class_names = [str(c) for c in names]
        lookup = {name: i for i, name in enumerate(names)}
        self.parts = {p: (as_tensor(x), torch.tensor([lookup[v] for v in y.tolist()]))
                      for p, (x, y) in parts.items()}
        self.num_classes = len(self.class_names)
        self.input_shape = tuple(self.parts["train"][0].shape[1:])
        self.dtype = str(parts["train"][0].dtype)
        self._setup_splits()  # the statistics need the training split, and describe() them
        self._ready = True

    # ---------------------------------------------------------------- splits
    def _setup_splits(self) -> None:
        x, y = self.parts["train"]
        rest = torch.arange(len(y))
        held = {}
        for part, size in (("test", self.test_size), ("val", self.val_size)):
            if part in self.parts:
                continue
            n_out = splits.val_count(size, len(y), f"{part}_size")  # fractions of the file's
            if n_out >= len(rest):
                raise ValueError(f"data.val_size and data.test_size leave no training data "
                                 f"of {len(y)} samples")
            kept, out = splits.stratified_split(y[rest], n_out, self.seed)
            rest, held[part] = rest[kept], rest[out]
        train_idx, unlabeled_idx = splits.labeled_and_pool(y, rest, self.num_labeled, self.seed)
        self.train_set = (x[train_idx], y[train_idx])
        self.unlabeled_set = (x[unlabeled_idx], y[unlabeled_idx])  # labels only for evaluation
        self.val_set = self.parts.get("val") or (x[held["val"]], y[held["val"]])
        self.test_set = self.parts.get("test") or (x[held["test"]], y[held["test"]])
        if len(self.test_set[1]) == 0:
            raise ValueError("no test data: add x_test/y_test to the file or set "
                             "data.test_size > 0")
        self.split_indices = {"train": train_idx, "unlabeled": unlabeled_idx, **held}
        self.mean, self.std = self._statistics(self.train_set[0].float())

    def _statistics(self, x: torch.Tensor) -> tuple[list[float], list[float]]:
        """Per channel (images) or per feature, of the training split; a constant input gets
        std 1, so it is centred, not divided by zero."""
        if self.normalize == "none":
            return [0.0] * x.shape[1], [1.0] * x.shape[1]
        if self.normalize == "unit":
            top = 255.0 if self.dtype == "uint8" else 1.0
            return [0.0] * x.shape[1], [top] * x.shape[1]
        dims = [0, 2, 3] if x.ndim == 4 else [0]
        std = x.std(dim=dims, unbiased=False)
        return x.mean(dim=dims).tolist(), torch.where(std > 0, std, 1.0).tolist()

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        return normalize_arrays(x, self.mean, self.std)

    def use_pipeline(self, info: dict) -> None:
        """Normalise with a checkpoint's training statistics (``info``: its data description)
        instead of these arrays' own, to evaluate it on them (``dlexp-eval CKPT data=arrays
        data.path=new.npz``); refused when these inputs are not the kind it was trained on."""
        if "input_shape" not in info or info.get("modality") == "text":
            raise ConfigError(f"data=arrays cannot read inputs as the training of this "
                              f"data={info.get('name')} checkpoint did; evaluate it on data "
                              "of its own kind")
        trained = tuple(info["input_shape"])
        if self.input_shape != trained:
            raise DataError(f"{self.path}: samples have shape {self.input_shape} (in the "
                            f"network's layout) but the checkpoint's model takes {trained}")
        if (self.dtype == "uint8") != (info.get("dtype") == "uint8"):
            raise DataError(f"{self.path}: the inputs are {self.dtype}, the checkpoint was "
                            f"trained on {info.get('dtype')} inputs, on another scale: save "
                            "them as the training arrays were")
        self.mean, self.std = list(info["mean"]), list(info["std"])

    def describe(self) -> dict:
        """What inference needs to reproduce the input pipeline, stored in checkpoints."""
        return {"name": "arrays", "modality": "image" if self.images else "features",
                "mean": self.mean, "std": self.std, "class_names": self.class_names,
                "num_classes": self.num_classes, "input_shape": list(self.input_shape),
                "channels": self.input_shape[0] if self.images else None, "dtype": self.dtype,
                "net_kwargs": {"in_shape": list(self.input_shape),
                               "num_classes": self.num_classes}}


def normalize_arrays(x: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """``(x - mean) / std`` per channel of (N, C, H, W) images or per feature of (N, D)."""
    shape = (1, -1, 1, 1) if x.ndim == 4 else (1, -1)
    m = torch.tensor(mean, device=x.device).view(shape)
    s = torch.tensor(std, device=x.device).view(shape)
    return (x.float() - m) / s
