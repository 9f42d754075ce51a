"""``dlexp-predict CKPT INPUT [INPUT ...]``: class and probability per image (image models) or
per review (text models, also ``--file``), from the checkpoint alone: its ``dlexp`` section
rebuilds the network and the input pipeline (normalisation, or the tokenizer). A folder stands
for every input file under it (images, or ``.txt`` files for text models), classified in
batches; ``--csv OUT`` writes the results as a table. Each good input gets its line even when
others are bad: a bad input given by name gets an ``error: INPUT: ...`` line on stderr and the
exit status 1; the unreadable files of a folder are named in one warning at the end. The exit
status is also 1 when nothing could be classified. A multi-label model prints, per input,
the labels whose probability is over ``--threshold`` (default: the training's
``data.threshold``, from the checkpoint)."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

from dlexp.errors import user_message
from dlexp.inference import BATCH_SIZE, Predictor, Ranked, load, unreadable
from dlexp.inputs import IMAGE_SUFFIXES, load_image

__all__ = ["load_image", "main", "predict_images", "predict_texts"]

SHOWN_CHARS = 60  # a review is shown by its start
PROGRESS_FROM = 2 * BATCH_SIZE  # inputs from which a progress bar is shown (on a terminal)


@dataclass
class Item:
    """One input: how it is shown and named in errors, its value, or why it cannot be read;
    ``walked``: found in a folder (its error joins the one warning, not an error line)."""

    shown: str
    name: str
    value: Any = None
    error: str | None = None
    walked: bool = False

    def __post_init__(self) -> None:
        # undecodable bytes in argv or a file name arrive as lone surrogates, which no stream
        # can print: they are shown escaped (\udcff), in every line and CSV cell
        self.shown, self.name = _printable(self.shown), _printable(self.name)


def _printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


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
                             "texts or .txt files for a text model; folders of either")
    parser.add_argument("--file", help="text model: a file with one review per line, blank "
                                       "lines skipped ('-' reads standard input)")
    parser.add_argument("--text", action="append", default=[],
                        help="text model: one text to classify (repeatable), also one that "
                             "looks like a file name or an option")
    parser.add_argument("--top-k", type=int, default=1, help="classes shown per input")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--csv", metavar="OUT", help="write path, class, probability (and "
                        "the top-k) per input to this CSV file instead of printing them")
    parser.add_argument("--threshold", type=float,
                        help="multi-label model: name the labels with a probability over this "
                             "(default: the checkpoint's data.threshold)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                        help="inputs per forward pass")
    args = parser.parse_intermixed_args(argv)  # texts before and after --text
    try:
        model = load(args.checkpoint)
        _use_threshold(model, args.threshold)
        items = _image_items(args, model) if model.modality != "text" else _text_items(args, model)
        table = _open_csv(args.csv)
    except Exception as exc:
        _exit_on(exc)
    with table as write_row, _progress(len(items)) as advance:
        if write_row is not None:
            key = "path" if model.modality != "text" else "input"
            write_row(_labels_header(key, model) if model.multilabel else
                      _csv_header(key, max(1, min(args.top_k, len(model.class_names)))))
        done = _report(model, items, args, write_row, advance)
    walked = [f"{i.name} ({i.error})" for i in items if i.walked and i.error is not None]
    if walked:
        print(f"warning: {len(walked)} of {sum(i.walked for i in items)} files found in "
              f"folders could not be read: {unreadable(walked)}", file=sys.stderr, flush=True)
    if args.csv:
        print(f"wrote {done} predictions to {args.csv}", flush=True)
    if done == 0 or any(i.error is not None and not i.walked for i in items):
        sys.exit(1)


def _report(model: Predictor, items: list[Item], args: argparse.Namespace,
            write_row: Callable[[list], None] | None, advance: Callable[[], None]) -> int:
    """Classify ``items`` batch by batch, each result printed (or written) in order; the
    number classified."""
    key = "file" if model.modality != "text" else "text"
    good = [i for i in items if i.error is None]
    ranked = model.classify_each([i.value for i in good], max(1, args.batch_size))  # lazily
    k = max(1, min(args.top_k, len(model.class_names)))
    done = 0
    for item in items:
        top: Ranked = []
        if item.error is None:
            top, item.error = next(ranked)
        if write_row is not None:
            write_row(_labels_row(item.shown, top, model, item.error) if model.multilabel
                      else _csv_row(item.shown, top or [], k, item.error))
        elif item.error is None and model.multilabel:
            _print_labels(key, item.shown, model.over_threshold(top), model.threshold, args)
        elif item.error is None:
            _print_result(key, item.shown, top, args)
        if item.error is not None and not item.walked:
            _emit(f"error: {item.name}: {item.error}", sys.stderr)
        done += item.error is None
        advance()
    return done


def _use_threshold(model: Predictor, threshold: float | None) -> None:
    """``--threshold`` for a multi-label model; refused for a single-label one (--top-k)."""
    if threshold is None:
        return
    if not model.multilabel:
        raise ValueError("--threshold is for multi-label models; this one picks one class per "
                         "input (use --top-k to see more)")
    if not 0 < threshold < 1:
        raise ValueError(f"--threshold must be in (0, 1), got {threshold}")
    model.threshold = threshold


def _exit_on(exc: Exception) -> NoReturn:
    """One ``error:`` line and exit 1 for what a user can fix; a bug keeps its traceback."""
    message = user_message(exc) or (str(exc) if isinstance(exc, ValueError | OSError) else None)
    if message is None:
        raise exc
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def _emit(line: str, stream: IO[str]) -> None:
    """A line past the progress bar (tqdm redraws it below), at once: results stream."""
    from tqdm import tqdm

    tqdm.write(line, file=stream)
    stream.flush()


@contextmanager
def _progress(total: int) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr for many inputs, when stderr is a terminal."""
    from tqdm import tqdm

    with tqdm(total=total, unit="input", file=sys.stderr, leave=False,
              disable=None if total >= PROGRESS_FROM else True) as bar:
        yield lambda: bar.update(1)


def _open_csv(path: str | None) -> Any:
    """A context giving a row writer for ``--csv`` (None without it); the file is opened
    now, so a path that cannot be written fails before any work."""
    if path is None:
        return nullcontext()
    try:  # closed by the context returned
        f = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
    except OSError as e:
        raise ValueError(f"cannot write --csv {path}: {e.strerror or e}") from None

    @contextmanager
    def rows() -> Iterator[Callable[[list], None]]:
        with f:
            yield csv.writer(f).writerow
    return rows()


def _csv_row(shown: str, top: Ranked, k: int, error: str | None) -> list:
    cells: list = [shown]
    for c, p in top[:k] if error is None else []:
        cells += [c, f"{p:.4f}"]
    cells += [""] * (1 + 2 * k - len(cells))
    return [*cells, error or ""]


def _csv_header(key: str, k: int) -> list[str]:
    more = [name for i in range(2, k + 1) for name in (f"class_{i}", f"probability_{i}")]
    return [key, "class", "probability", *more, "error"]


def _labels_header(key: str, model: Predictor) -> list[str]:
    return [key, "labels", *(f"p_{name}" for name in model.class_names), "error"]


def _labels_row(shown: str, top: Ranked, model: Predictor, error: str | None) -> list:
    """A multi-label row: the labels over the threshold (``;``-joined), every probability."""
    probs = dict(top)
    labels = ";".join(c for c, _ in model.over_threshold(top))
    return [shown, labels, *(f"{probs[c]:.4f}" if probs else "" for c in model.class_names),
            error or ""]


def _print_labels(key: str, shown: str, over: Ranked, threshold: float,
                  args: argparse.Namespace) -> None:
    if args.json:
        _emit(json.dumps({key: shown, "labels": [{"label": c, "probability": p}
                                                  for c, p in over],
                          "threshold": threshold}), sys.stdout)
    else:
        found = "  ".join(f"{c} ({p:.3f})" for c, p in over) or \
            f"(no label over {threshold:g})"
        _emit(f"{shown}: {found}", sys.stdout)


def _print_result(key: str, shown: str, top: list[tuple[str, float]],
                  args: argparse.Namespace) -> None:
    top = top[: max(1, args.top_k)]
    if args.json:
        _emit(json.dumps({key: shown, "class": top[0][0], "probability": top[0][1],
                          "top": [{"class": c, "probability": p} for c, p in top]}), sys.stdout)
    else:
        _emit(f"{shown}: " + "  ".join(f"{c} ({p:.3f})" for c, p in top), sys.stdout)


def _image_items(args: argparse.Namespace, model: Predictor) -> list[Item]:
    if not args.inputs or args.file or args.text:
        raise ValueError("give image files or folders after the checkpoint (--file and --text "
                         "are for text models)")
    items = []
    for path in args.inputs:
        items += _folder_items(path, model, str) if os.path.isdir(path) \
            else [Item(path, path, path)]
    return items


def _text_items(args: argparse.Namespace, model: Predictor) -> list[Item]:
    images = [t for t in args.inputs if _is_image_file(t)]
    if images:  # a file path would silently be classified as a one-word review
        raise ValueError(f"{images[0]} is an image, but {args.checkpoint} classifies text: "
                         "pass review texts, or --file with one review per line")
    items = []
    for t in args.inputs:
        if os.path.isdir(t):
            items += _folder_items(t, model, Path)
        elif t.lower().endswith(".txt") and os.path.isfile(t):  # a review in a file
            items.append(Item(t, t, Path(t)))
        else:
            items.append(Item(_shorten(t), _shorten(t) if t.strip() else repr(t), t))
    items += [Item(_shorten(t), _shorten(t) if t.strip() else repr(t), t) for t in args.text]
    if args.file:
        items += _file_items(args.file)
    if not items:
        raise ValueError("give review texts after the checkpoint, or --file with one per line")
    return items


def _folder_items(folder: str, model: Predictor, value: Callable[[Path], Any]) -> list[Item]:
    """An item per input file under ``folder``; an empty folder is itself a bad input."""
    files = model.files(folder)
    if not files:
        return [Item(folder, folder, error="no input files in this folder "
                                          f"({', '.join(model.suffixes)})")]
    return [Item(str(p), str(p), value(p), walked=True) for p in files]


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
