"""``dlexp-predict CKPT INPUT [INPUT ...]``: class and probability per image (image models) or
per review (text models, also ``--file``), from the checkpoint alone: its ``dlexp`` section
rebuilds the network and the input pipeline (normalisation, or the tokenizer)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from dlexp import checkpoint
from dlexp.data.tokenizer import encode_texts
from dlexp.errors import CheckpointError, user_message

DIGIT_BOX, CANVAS = 20, 28  # MNIST digits fit a 20x20 box centred on a 28x28 canvas
BLANK_CONTRAST = 8  # grey levels: less between darkest and lightest pixel is no ink (JPEG noise)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def load_image(path: str | Path) -> torch.Tensor:
    """Any PNG/JPG as MNIST sees digits: transparency flattened, grayscale, light ink on a dark
    background (inverted when the border is light), cropped to the ink, scaled into 20x20 and
    placed on 28x28 with its centre of mass in the middle.
    Returns uint8 of shape (1, 28, 28); ValueError for an unreadable or blank image."""
    try:
        with Image.open(path) as im:
            gray = _opaque(ImageOps.exif_transpose(im)).convert("L")
    except (OSError, UnidentifiedImageError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from None
    if _blank(gray):
        raise ValueError(f"no digit found in {path}: the image is blank")
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


def _opaque(im: Image.Image) -> Image.Image:
    """Transparency flattened onto white: drawing apps export dark ink on a transparent
    background whose hidden colour is often black, so ``convert("L")`` alone would read all
    black. Onto black instead when that leaves nothing (light ink on transparent)."""
    if im.mode not in ("RGBA", "LA", "PA") and "transparency" not in im.info:
        return im
    rgba = im.convert("RGBA")
    for colour in ((255, 255, 255, 255), (0, 0, 0, 255)):
        flat = Image.alpha_composite(Image.new("RGBA", rgba.size, colour), rgba).convert("L")
        if not _blank(flat):
            break
    return flat


def _blank(gray: Image.Image) -> bool:
    lo, hi = gray.getextrema()
    return hi - lo < BLANK_CONTRAST


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
    return _rank_images(checkpoint.load(ckpt_path), ckpt_path, images)


def predict_texts(ckpt_path: str, texts: list[str]) -> list[list[tuple[str, float]]]:
    """Per text, (class name, probability) pairs sorted by probability. The tokenizer comes
    from the checkpoint, so the text is encoded exactly as in training."""
    return _rank_texts(checkpoint.load(ckpt_path), ckpt_path, texts)


def _rank_images(ckpt: dict, path: str, images: list[str]) -> list[list[tuple[str, float]]]:
    info = _expect(ckpt, path, "image")
    batch = torch.stack([load_image(p) for p in images]).float()
    return _ranked(ckpt, path, (batch / 255 - info["mean"]) / info["std"])


def _rank_texts(ckpt: dict, path: str, texts: list[str]) -> list[list[tuple[str, float]]]:
    ids, lengths = encode_texts(_expect(ckpt, path, "text"), texts)
    return _ranked(ckpt, path, (ids, lengths))


def _expect(ckpt: dict, path: str, modality: str) -> dict:
    """The checkpoint's data description, if its model takes ``modality`` input."""
    info = ckpt["dlexp"]["data"]
    if info["modality"] != modality:
        wants = "image files" if info["modality"] == "image" else "text (arguments, or --file)"
        raise CheckpointError(f"{path} is a {info['modality']} model: give it {wants}, not "
                              f"{modality}")
    return info


def _ranked(ckpt: dict, path: str, inputs: torch.Tensor | tuple) -> list[list[tuple[str, float]]]:
    task = checkpoint.rebuild_task(ckpt, path)
    with torch.inference_mode():
        probs = task(inputs).float().softmax(-1)
    names = ckpt["dlexp"]["data"]["class_names"]
    return [sorted(((names[i], float(p[i])) for i in range(len(names))),
                   key=lambda t: -t[1]) for p in probs]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="dlexp-predict", description=__doc__)
    parser.add_argument("checkpoint", help="a .ckpt written by train.py")
    parser.add_argument("inputs", nargs="*",
                        help="image files (PNG/JPG of any size) for an image model; review "
                             "texts for a text model")
    parser.add_argument("--file", help="text model: a file with one review per line "
                                       "('-' reads standard input)")
    parser.add_argument("--top-k", type=int, default=1, help="classes shown per input")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args(argv)
    try:
        key, names, ranked = _predict(args)
    except Exception as exc:
        message = user_message(exc) or (str(exc) if isinstance(exc, ValueError | OSError)
                                        else None)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)
    for name, top in zip(names, ranked, strict=True):
        top = top[: max(1, args.top_k)]
        if args.json:
            print(json.dumps({key: name, "class": top[0][0], "probability": top[0][1],
                              "top": [{"class": c, "probability": p} for c, p in top]}))
        else:
            shown = "  ".join(f"{c} ({p:.3f})" for c, p in top)
            print(f"{name}: {shown}")


def _predict(args: argparse.Namespace) -> tuple[str, list[str], list[list[tuple[str, float]]]]:
    """(JSON key, what each input is shown as, ranked classes per input)."""
    ckpt = checkpoint.load(args.checkpoint)  # read once: it decides the input kind too
    if ckpt["dlexp"]["data"]["modality"] == "image":
        if not args.inputs or args.file:
            raise ValueError("give image files after the checkpoint (--file is for text models)")
        return "file", args.inputs, _rank_images(ckpt, args.checkpoint, args.inputs)
    images = [t for t in args.inputs if _is_image_file(t)]
    if images:  # a file path would silently be classified as a one-word review
        raise ValueError(f"{images[0]} is an image, but {args.checkpoint} classifies text: "
                         "pass review texts, or --file with one review per line")
    texts = list(args.inputs)
    if args.file:
        try:
            lines = (sys.stdin.read() if args.file == "-"
                     else Path(args.file).read_text(encoding="utf-8")).splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read --file {args.file}: {getattr(e, 'strerror', e)}"
                             ) from None
        texts += [line for line in lines if line.strip()]
    if not texts:
        raise ValueError("give review texts after the checkpoint, or --file with one per line")
    shown = [t if len(t) <= 60 else t[:57] + "..." for t in texts]
    return "text", shown, _rank_texts(ckpt, args.checkpoint, texts)


def _is_image_file(text: str) -> bool:
    return Path(text).suffix.lower() in IMAGE_SUFFIXES and os.path.isfile(text)


if __name__ == "__main__":
    main()
