"""``dlexp-predict CKPT IMAGE [IMAGE ...]``: class and probability for each image, from the
checkpoint alone (its ``dlexp`` section rebuilds the network and the input pipeline)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from dlexp import wiring
from dlexp.errors import CheckpointError, user_message

DIGIT_BOX, CANVAS = 20, 28  # MNIST digits fit a 20x20 box centred on a 28x28 canvas


def load_image(path: str | Path) -> torch.Tensor:
    """Any PNG/JPG as MNIST sees digits: grayscale, light ink on a dark background (inverted
    when the border is light), cropped to the ink, scaled into 20x20 and placed on 28x28 with
    its centre of mass in the middle.
    Returns uint8 of shape (1, 28, 28)."""
    try:
        with Image.open(path) as im:
            gray = ImageOps.exif_transpose(im).convert("L")
    except (OSError, UnidentifiedImageError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from None
    pixels = np.asarray(gray)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if border.mean() > 127:  # dark digit on light paper: flip to MNIST's light-on-dark
        gray = ImageOps.invert(gray)
    box = gray.point(lambda p: 255 if p > 50 else 0).getbbox()
    digit = gray.crop(box) if box else gray
    scale = DIGIT_BOX / max(digit.size)
    size = (max(1, round(digit.width * scale)), max(1, round(digit.height * scale)))
    digit = digit.resize(size, Image.Resampling.LANCZOS)
    canvas = Image.new("L", (CANVAS, CANVAS))
    canvas.paste(digit, _centre_of_mass_offset(np.asarray(digit, dtype=np.float64)))
    return torch.from_numpy(np.asarray(canvas).copy()).unsqueeze(0)


def _centre_of_mass_offset(ink: np.ndarray) -> tuple[int, int]:
    """Where to paste so the ink's centre of mass lands on the canvas centre, as MNIST did."""
    h, w = ink.shape
    total = ink.sum()
    if total == 0:
        return (CANVAS - w) // 2, (CANVAS - h) // 2
    cy = (ink.sum(1) * np.arange(h)).sum() / total
    cx = (ink.sum(0) * np.arange(w)).sum() / total
    x = int(np.clip(round(CANVAS / 2 - cx), 0, CANVAS - w))
    y = int(np.clip(round(CANVAS / 2 - cy), 0, CANVAS - h))
    return x, y


def predict_images(ckpt_path: str, images: list[str]) -> list[list[tuple[str, float]]]:
    """Per image, (class name, probability) pairs sorted by probability."""
    ckpt = wiring.load_checkpoint(ckpt_path)
    info = ckpt["dlexp"]["data"]
    if info["modality"] != "image":
        raise CheckpointError(f"{ckpt_path} is a {info['modality']} model; give it text, "
                              "not images")
    task = wiring.task_from_checkpoint(ckpt, ckpt_path)
    batch = torch.stack([load_image(p) for p in images]).float()
    batch = (batch / 255 - info["mean"]) / info["std"]
    with torch.inference_mode():
        probs = task(batch).float().softmax(-1)
    names = info["class_names"]
    return [sorted(((names[i], float(p[i])) for i in range(len(names))),
                   key=lambda t: -t[1]) for p in probs]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="dlexp-predict", description=__doc__)
    parser.add_argument("checkpoint", help="a .ckpt written by train.py")
    parser.add_argument("images", nargs="+", help="PNG/JPG files of any size")
    parser.add_argument("--top-k", type=int, default=1, help="classes shown per image")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args(argv)
    try:
        ranked = predict_images(args.checkpoint, args.images)
    except Exception as exc:
        message = user_message(exc) or (str(exc) if isinstance(exc, ValueError) else None)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)
    for path, top in zip(args.images, ranked, strict=True):
        top = top[: max(1, args.top_k)]
        if args.json:
            print(json.dumps({"file": path, "class": top[0][0], "probability": top[0][1],
                              "top": [{"class": c, "probability": p} for c, p in top]}))
        else:
            shown = "  ".join(f"{c} ({p:.3f})" for c, p in top)
            print(f"{path}: {shown}")


if __name__ == "__main__":
    main()
