"""``dlexp-predict CKPT INPUT [INPUT ...]``: class and probability per image (image models) or
per review (text models, also ``--file``), from the checkpoint alone: its ``dlexp`` section
rebuilds the network and the input pipeline (normalisation, or the tokenizer). Each good input
gets its line even when others are bad: those get an ``error: INPUT: ...`` line on stderr, and
the exit status is 1."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from dlexp.errors import user_message
from dlexp.inference import Predictor, load
from dlexp.inputs import load_image

__all__ = ["load_image", "main", "predict_images", "predict_texts"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
SHOWN_CHARS = 60  # a review is shown by its start


@dataclass
class Item:
    """One input: how it is shown and named in errors, its value, or why it cannot be read."""

    shown: str
    name: str
    value: Any = None
    error: str | None = None


def predict_images(ckpt_path: str, images: list[str]) -> list[list[tuple[str, float]]]:
    """Per image, (class name, probability) pairs sorted by probability."""
    model = load(ckpt_path)
    return model.rank(model.predict_images(images))


def predict_texts(ckpt_path: str, texts: list[str]) -> list[list[tuple[str, float]]]:
    """Per text, (class name, probability) pairs sorted by probability. The tokenizer comes
    from the checkpoint, so the text is encoded exactly as in training."""
    model = load(ckpt_path)
    return model.rank(model.predict_texts(texts))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="dlexp-predict", description=__doc__)
    parser.add_argument("checkpoint", help="a .ckpt written by train.py")
    parser.add_argument("inputs", nargs="*",
                        help="image files (PNG/JPG of any size) for an image model; review "
                             "texts for a text model")
    parser.add_argument("--file", help="text model: a file with one review per line, blank "
                                       "lines skipped ('-' reads standard input)")
    parser.add_argument("--text", action="append", default=[],
                        help="text model: one text to classify (repeatable), also one that "
                             "looks like a file name or an option")
    parser.add_argument("--top-k", type=int, default=1, help="classes shown per input")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_intermixed_args(argv)  # texts before and after --text
    try:
        model = load(args.checkpoint)
        items = _image_items(args) if model.modality != "text" else _text_items(args)
    except Exception as exc:
        _exit_on(exc)
    ranked = iter(_classify(model, items))
    key = "file" if model.modality != "text" else "text"
    for item in items:
        if item.error is None:
            _print_result(key, item.shown, next(ranked), args)
        else:
            print(f"error: {item.name}: {item.error}", file=sys.stderr, flush=True)
    if any(item.error is not None for item in items):
        sys.exit(1)


def _exit_on(exc: Exception) -> NoReturn:
    """One ``error:`` line and exit 1 for what a user can fix; a bug keeps its traceback."""
    message = user_message(exc) or (str(exc) if isinstance(exc, ValueError | OSError) else None)
    if message is None:
        raise exc
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def _classify(model: Predictor, items: list[Item]) -> list[list[tuple[str, float]]]:
    """Ranked classes for the items that can be read, in order; the others get their error."""
    prepare = model.prepare_image if model.modality != "text" else model.prepare_text
    ready = []
    for item in items:
        if item.error is None:
            try:
                ready.append(prepare(item.value))
            except ValueError as e:
                item.error = str(e)
    probs = model.classify_images(ready) if model.modality != "text" \
        else model.classify_texts(ready)
    return model.rank(probs)


def _print_result(key: str, shown: str, top: list[tuple[str, float]],
                  args: argparse.Namespace) -> None:
    top = top[: max(1, args.top_k)]
    if args.json:
        print(json.dumps({key: shown, "class": top[0][0], "probability": top[0][1],
                          "top": [{"class": c, "probability": p} for c, p in top]}), flush=True)
    else:
        print(f"{shown}: " + "  ".join(f"{c} ({p:.3f})" for c, p in top), flush=True)


def _image_items(args: argparse.Namespace) -> list[Item]:
    if not args.inputs or args.file or args.text:
        raise ValueError("give image files after the checkpoint (--file and --text are for "
                         "text models)")
    return [Item(path, path, path) for path in args.inputs]


def _text_items(args: argparse.Namespace) -> list[Item]:
    images = [t for t in args.inputs if _is_image_file(t)]
    if images:  # a file path would silently be classified as a one-word review
        raise ValueError(f"{images[0]} is an image, but {args.checkpoint} classifies text: "
                         "pass review texts, or --file with one review per line")
    items = [Item(_shorten(t), _shorten(t) if t.strip() else repr(t), t)
             for t in args.inputs + args.text]
    if args.file:
        items += _file_items(args.file)
    if not items:
        raise ValueError("give review texts after the checkpoint, or --file with one per line")
    return items


def _file_items(path: str) -> list[Item]:
    """One item per non-blank line; a line that is not UTF-8 is named, the others still run."""
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read --file {path}: {e.strerror or e}") from None
    items = []
    for number, raw in enumerate(data.splitlines(), 1):  # bytes: \n, \r\n or \r only
        name = f"--file {path} line {number}"
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            items.append(Item(name, name, error="not UTF-8"))
            continue
        if text.strip():
            items.append(Item(_shorten(text), name, text))
    return items


def _shorten(text: str) -> str:
    """A review's start on one line: each result or error stays one line."""
    text = " ".join(text.lstrip()[: SHOWN_CHARS * 4].split())
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def _is_image_file(text: str) -> bool:
    return Path(text).suffix.lower() in IMAGE_SUFFIXES and os.path.isfile(text)


if __name__ == "__main__":
    main()
