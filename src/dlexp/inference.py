"""The public loading API: ``dlexp.load(ckpt)`` gives a :class:`Predictor`, a trained model with
the input pipeline its training used, ready for images or reviews from Python::

    import dlexp
    model = dlexp.load("outputs/mnist_cnn/runs/<run>/checkpoints/last.ckpt")
    probs = model.predict_images(["digit.png", pil_image, numpy_array])  # [N, classes]
    model.class_names[int(probs[0].argmax())]

``dlexp-predict`` and ``dlexp-demo`` are built on it, so the three cannot disagree.
(``ClassificationTask.load_from_checkpoint`` cannot work: the network is built from the
checkpoint's ``dlexp`` section, not from saved hyperparameters.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlexp import checkpoint
from dlexp.data.tokenizer import from_json, pad_ids
from dlexp.errors import CheckpointError
from dlexp.inputs import (
    ImageInput,
    load_image,
    load_picture,
    load_sample,
    normalize_images,
    review_ids,
    sample_batch,
)
from dlexp.task import ClassificationTask


class Predictor:
    """A trained dlexp model for inference.

    ``task`` (the :class:`~dlexp.task.ClassificationTask`) and ``net`` (its network) are in eval
    mode on the CPU; ``class_names`` names the output columns; ``modality`` is ``"image"`` or
    ``"text"``; ``data`` is the checkpoint's data description (normalisation, tokenizer, ...).
    """

    def __init__(self, ckpt: dict, path: str | Path) -> None:
        self.path = str(path)
        self.data: dict = ckpt["dlexp"]["data"]
        self.modality: str = self.data["modality"]
        self.class_names: list[str] = [str(c) for c in self.data["class_names"]]
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

    def predict(self, x: Any) -> torch.Tensor:
        """Class probabilities [N, classes] for a batch of arrays as training read them, like
        Keras' ``model.predict(x_test)``: (N, 28, 28) digits for MNIST, the training arrays'
        layout for ``data=arrays`` and ``dlexp.fit`` models. Text models: :meth:`predict_texts`."""
        if self.modality == "text":
            raise CheckpointError(f"{self.path} classifies texts: use predict_texts")
        return self.classify_images(sample_batch(x, self.data))

    def predict_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Class probabilities [N, classes] for review texts. ValueError naming the first
        text that cannot be used (blank, not valid Unicode)."""
        return self.classify_texts(self._each(self.prepare_text, texts, "text"))

    def rank(self, probs: torch.Tensor) -> list[list[tuple[str, float]]]:
        """Per row of ``probs``, (class name, probability) pairs, most probable first."""
        return [sorted(zip(self.class_names, map(float, p), strict=True), key=lambda t: -t[1])
                for p in probs]

    # ------------------------------------------------------------------ one input at a time
    def prepare_image(self, image: ImageInput) -> torch.Tensor:
        """One image as the network's input: uint8 [1, 28, 28] (:func:`dlexp.inputs.load_image`);
        for ``data=arrays`` models, an array, ``.npy`` file or image (:func:`~dlexp.inputs.load_sample`);
        for ``data=image_folder`` models, an image as training decoded them
        (:func:`~dlexp.inputs.load_picture`)."""
        if self.data.get("name") == "arrays":
            return load_sample(image, self.data)
        if self.data.get("name") == "image_folder":
            return load_picture(image, self.data["image_size"], self.data["channels"],
                                self.data["resize"])
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
            return self.task(inputs).float().softmax(-1)

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


def load(path: str | Path) -> Predictor:
    """A trained dlexp checkpoint, ready for inference (read safely: ``weights_only=True``)."""
    return Predictor(checkpoint.load(path), path)
