"""The public loading API: ``dlexp.load(ckpt)`` gives a :class:`Predictor`, a trained model with
the input pipeline its training used, ready for images or reviews from Python::

    import dlexp
    model = dlexp.load("outputs/mnist_cnn/runs/<run>/checkpoints/last.ckpt")
    probs = model.predict_images(["digit.png", pil_image, numpy_array])  # [N, classes]
    model.class_names[int(probs[0].argmax())]
    model.predict("photos/")              # {file: class name} for every image under the folder
    model.predict(["a.png", "b.png"])     # class names (a text model: reviews, or .txt files)

A multi-label model (trained on ``data.label_sep`` or 0/1 label columns) gives a sigmoid
probability per label, and ``predict`` a list of the label names whose probability is over
``model.threshold`` (the training's ``data.threshold`` unless set) for each input.

``dlexp-predict`` and ``dlexp-demo`` are built on it, so the three cannot disagree.
(``ClassificationTask.load_from_checkpoint`` cannot work: the network is built from the
checkpoint's ``dlexp`` section, not from saved hyperparameters.)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from dlexp import checkpoint
from dlexp.data.tokenizer import from_json, pad_ids
from dlexp.errors import CheckpointError
from dlexp.inputs import (
    IMAGE_SUFFIXES,
    TEXT_SUFFIXES,
    ImageInput,
    files_in,
    load_image,
    load_picture,
    load_sample,
    normalize_images,
    own_arrays,
    read_text_file,
    review_ids,
    sample_batch,
)
from dlexp.task import ClassificationTask

BATCH_SIZE = 256  # inputs per forward pass when classifying files
SHOWN_BAD = 10  # unreadable files named in the warning; the rest are counted
Ranked = list[tuple[str, float]]


class Predictor:
    """A trained dlexp model for inference.

    ``task`` (the :class:`~dlexp.task.ClassificationTask`) and ``net`` (its network) are in eval
    mode on the CPU; ``class_names`` names the output columns; ``modality`` is ``"image"`` or
    ``"text"``; ``data`` is the checkpoint's data description (normalisation, tokenizer, ...).
    ``multilabel``: the outputs are independent label probabilities; ``threshold`` (settable)
    is the one over which :meth:`predict` names a label.
    """

    def __init__(self, ckpt: dict, path: str | Path) -> None:
        self.path = str(path)
        self.data: dict = ckpt["dlexp"]["data"]
        self.modality: str = self.data["modality"]
        self.class_names: list[str] = [str(c) for c in self.data["class_names"]]
        self.multilabel: bool = bool(self.data.get("multilabel"))
        self.threshold: float = float(self.data.get("threshold", 0.5))
        self.task: ClassificationTask = checkpoint.rebuild_task(ckpt, path)
        self.net: nn.Module = self.task.net
        self._tokenizer = from_json(self.data["tokenizer"]) if self.modality == "text" else None

    def __repr__(self) -> str:
        return (f"Predictor({self.path!r}, {type(self.net).__name__}, {self.modality}, "
                f"classes={self.class_names})")

    # ------------------------------------------------------------------ whole batches
    def predict_images(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """Class probabilities [N, classes] for image files (paths or open binary files), PIL
        images or arrays. ValueError naming the first image that cannot be used."""
        return self.classify_images(self._each(self.prepare_image, images, "image"))

    def predict(self, x: Any) -> torch.Tensor | list | str | dict:
        """Arrays: class probabilities [N, classes] for a batch in the training arrays' layout,
        like Keras' ``model.predict(x_test)``: (N, 28, 28) digits for MNIST, the training
        arrays' layout for ``data=arrays`` and ``dlexp.fit`` models.

        Anything else: class names. A file (for a text model: a review, or a ``.txt`` file)
        gives its class name; a list of them (or of PIL images), one name each (ValueError
        naming the first that cannot be used); a folder, ``{file: class name}`` for every input
        file under it (:meth:`files`), those that cannot be read left out with one warning.
        A multi-label model gives a list of label names in place of each class name."""
        if isinstance(x, str | Path) and os.path.isdir(x):
            return self._folder_names(Path(x))
        if isinstance(x, str | Path):
            return self._names([x])[0]
        if isinstance(x, list | tuple) and any(isinstance(i, str | Path | Image.Image)
                                               for i in x):
            return self._names(list(x))
        if self.modality == "text":
            raise CheckpointError(f"{self.path} classifies texts: give texts, .txt files or a "
                                  "folder of them (or use predict_texts)")
        return self.classify_images(sample_batch(x, self.data))

    def predict_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Class probabilities [N, classes] for review texts. ValueError naming the first
        text that cannot be used (blank, not valid Unicode)."""
        return self.classify_texts(self._each(self.prepare_text, texts, "text"))

    def over_threshold(self, ranked: Ranked, threshold: float | None = None) -> Ranked:
        """The (label, probability) pairs of a multi-label model's ranked output whose
        probability is over ``threshold`` (default :attr:`threshold`), most probable first."""
        cut = self.threshold if threshold is None else threshold
        return [(c, p) for c, p in ranked if p > cut]

    def _answer(self, ranked: Ranked) -> str | list[str]:
        """The class name, or a multi-label model's label names over the threshold."""
        if self.multilabel:
            return [c for c, _ in self.over_threshold(ranked)]
        return ranked[0][0]

    def rank(self, probs: torch.Tensor) -> list[list[tuple[str, float]]]:
        """Per row of ``probs``, (class name, probability) pairs, most probable first."""
        return [sorted(zip(self.class_names, map(float, p), strict=True), key=lambda t: -t[1])
                for p in probs]

    # ------------------------------------------------------------------ files and folders
    @property
    def suffixes(self) -> tuple[str, ...]:
        """The file types searched for in a folder: ``.txt`` for text models, images (and
        ``.npy`` arrays for ``data=arrays``-like models) for the others."""
        if self.modality == "text":
            return TEXT_SUFFIXES
        npy = (".npy",) if own_arrays(self.data) else ()
        return npy if self.modality == "features" else IMAGE_SUFFIXES + npy

    def files(self, folder: str | Path) -> list[Path]:
        """The input files under ``folder``, all depths, sorted (hidden ones left out)."""
        return files_in(folder, self.suffixes)

    def prepare(self, source: Any) -> Any:
        """One input as the network takes it: :meth:`prepare_text` for text models (a
        ``Path`` is a text file, read whole), else :meth:`prepare_image`."""
        if self.modality != "text":
            return self.prepare_image(source)
        return self.prepare_text(read_text_file(source) if isinstance(source, Path) else source)

    def classify(self, prepared: list) -> torch.Tensor:
        """Probabilities for :meth:`prepare` outputs."""
        if self.modality == "text":
            return self.classify_texts(prepared)
        return self.classify_images(prepared)

    def classify_each(self, sources: Sequence[Any], batch_size: int = BATCH_SIZE
                      ) -> Iterator[tuple[Ranked | None, str | None]]:
        """Per source, in order: its ranked classes, or None and why it cannot be used. Decoded
        in threads (Pillow and the tokenizer release the GIL) and classified ``batch_size`` at a
        time, so a folder of any size takes memory for one batch."""
        it = iter(sources)
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            while chunk := list(islice(it, max(1, batch_size))):
                prepared = list(pool.map(self._try_prepare, chunk))
                ready = [p for p, error in prepared if error is None]
                ranked = iter(self.rank(self.classify(ready)))
                for _, error in prepared:
                    yield (next(ranked), None) if error is None else (None, error)

    def _try_prepare(self, source: Any) -> tuple[Any, str | None]:
        try:
            return self.prepare(source), None
        except ValueError as e:
            if isinstance(e, CheckpointError):
                raise
            return None, str(e)

    def _names(self, sources: list[Any]) -> list:
        sources = [self._as_source(s) for s in sources]
        names = []
        for i, (ranked, error) in enumerate(self.classify_each(sources)):
            if error is not None:
                is_file = isinstance(sources[i], Path) or self.modality != "text"
                name = str(sources[i]) if isinstance(sources[i], str | Path) and is_file \
                    else f"input {i}"
                raise ValueError(f"{name}: {error}")
            names.append(self._answer(ranked))
        return names

    def _as_source(self, source: Any) -> Any:
        """A text model's string that names a file is that file; other strings are reviews."""
        if self.modality == "text" and isinstance(source, str) and os.path.isfile(source):
            return Path(source)
        return source

    def _folder_names(self, folder: Path) -> dict[str, Any]:
        files = self.files(folder)
        if not files:
            raise ValueError(f"{folder}: no input files in it ({', '.join(self.suffixes)})")
        names, bad = {}, []
        for path, (ranked, error) in zip(files, self.classify_each(files), strict=True):
            if error is None:
                names[str(path)] = self._answer(ranked)
            else:
                bad.append(f"{path} ({error})")
        if bad and not names:
            raise ValueError(f"{folder}: none of its {len(files)} files could be read: "
                             + unreadable(bad))
        if bad:
            warnings.warn(f"{len(bad)} of {len(files)} files could not be read and were left "
                          f"out: {unreadable(bad)}", stacklevel=3)
        return names

    # ------------------------------------------------------------------ one input at a time
    def prepare_image(self, image: ImageInput) -> torch.Tensor:
        """One image as the network's input: uint8 [1, 28, 28] (:func:`dlexp.inputs.load_image`);
        for ``data=arrays`` models, an array, ``.npy`` file or image (:func:`~dlexp.inputs.load_sample`);
        for ``data=image_folder`` models, an image as training decoded them
        (:func:`~dlexp.inputs.load_picture`)."""
        if self.data.get("name") == "image_folder":
            return load_picture(image, self.data["image_size"], self.data["channels"],
                                self.data["resize"])
        if own_arrays(self.data):
            return load_sample(image, self.data)
        self._expect("image")
        return load_image(image)

    def prepare_text(self, text: str) -> list[int]:
        """One review as the token ids training would have fed."""
        self._expect("text")
        return review_ids(self._tokenizer, text, self.data)

    def classify_images(self, images: list[torch.Tensor]) -> torch.Tensor:
        """Probabilities for :meth:`prepare_image` outputs."""
        return self._probabilities(normalize_images(images, self.data) if images else None)

    def classify_texts(self, ids: list[list[int]]) -> torch.Tensor:
        """Probabilities for :meth:`prepare_text` outputs."""
        return self._probabilities(pad_ids(ids) if ids else None)

    # ------------------------------------------------------------------ internals
    def _probabilities(self, inputs: Any) -> torch.Tensor:
        if inputs is None:
            return torch.zeros(0, len(self.class_names))
        with torch.inference_mode():
            logits = self.task(inputs).float()
            return logits.sigmoid() if self.multilabel else logits.softmax(-1)

    def _expect(self, modality: str) -> None:
        if self.modality != modality:
            raise CheckpointError(f"{self.path} classifies {self.modality}s, not {modality}s: "
                                  f"use predict_{self.modality}s")

    def _each(self, prepare: Callable[[Any], Any], inputs: Sequence[Any], kind: str) -> list:
        if isinstance(inputs, str | bytes | Path):  # one input: iterating would split it up
            raise TypeError(f"predict_{kind}s takes a list of {kind}s; wrap a single one in [ ]")
        out = []
        for i, item in enumerate(inputs):
            try:
                out.append(prepare(item))
            except ValueError as e:
                if isinstance(e, CheckpointError):
                    raise
                name = str(item) if isinstance(item, str | Path) and kind == "image" \
                    else f"{kind} {i}"
                raise ValueError(f"{name}: {e}") from None
        return out


def unreadable(bad: list[str]) -> str:
    """The first :data:`SHOWN_BAD` of ``bad`` on one line, and how many more."""
    more = f"; and {len(bad) - SHOWN_BAD} more" if len(bad) > SHOWN_BAD else ""
    return "; ".join(bad[:SHOWN_BAD]) + more


def load(path: str | Path) -> Predictor:
    """A trained dlexp checkpoint, ready for inference (read safely: ``weights_only=True``)."""
    return Predictor(checkpoint.load(path), path)
