"""``dlexp-data DIR|FILE``: what a dataset holds, before any training. Counts per class and
split; for images their sizes and modes, for texts their lengths in words; unreadable files,
duplicates (same content) and files that are not data; a PNG grid of samples per class.

Reads an ``.npz`` of arrays (``data=arrays``), a folder of class folders of images or ``.txt``
files (optionally under ``train/``, ``val/``, ``test/``), or a CSV/TSV/JSONL/Parquet table of
texts and labels, or of image paths and labels (``data=image_folder data.table=``). Prints the summary and writes ``summary.md``, ``summary.json`` and
``samples.png`` into ``--out`` (default ``./data_summary/``)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dlexp.data import table as tables
from dlexp.errors import DataError
from dlexp.inputs import IMAGE_SUFFIXES, TEXT_SUFFIXES

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "dev": "val", "test": "test", "testing": "test"}
TABLE_SUFFIXES = tables.SUFFIXES
TEXT_COLUMNS = ("text", "review", "sentence", "content", "document")
PATH_COLUMNS = ("path", "file", "filename", "image")  # an image table's, as data.path_column
LABEL_COLUMNS = ("label", "labels", "class", "target", "category", "sentiment")
SAMPLES_PER_CLASS = 8
TILE = 64  # pixels per sample in the grid
SHOWN = 10  # files named per finding; the rest are counted

Item = tuple[Path, str, str]  # (path, label, split); split "" when the data has no splits


# ---------------------------------------------------------------- scanning a class folder
def scan_folder(root: str | Path) -> list[Item]:
    """The data files of a class folder: ``root/<class>/...`` or, when split folders exist,
    ``root/<split>/<class>/...`` (train, val or valid, test), any depth below the class.
    Images and ``.txt`` files only; hidden files and folders are skipped (see
    :func:`not_data` for what else is there). Sorted by split, class and path."""
    root = Path(root)
    tops = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    split_dirs = [d for d in tops if d.name.lower() in SPLIT_ALIASES]
    parts = [(d, SPLIT_ALIASES[d.name.lower()]) for d in split_dirs] or [(root, "")]
    items = []
    for folder, split in parts:
        for class_dir in sorted(d for d in folder.iterdir()
                                if d.is_dir() and not d.name.startswith(".")):
            items += [(p, class_dir.name, split) for p in _files(class_dir)
                      if p.suffix.lower() in IMAGE_SUFFIXES + TEXT_SUFFIXES]
    return items


def not_data(root: Path, found: Iterable[Item]) -> list[Path]:
    """Every file under ``root`` that :func:`scan_folder` did not take: ``.DS_Store``,
    ``Thumbs.db``, notes, files outside the class folders."""
    kept = {path for path, _, _ in found}
    return [p for p in _files(root, hidden=True) if p not in kept]


def _files(folder: Path, hidden: bool = False) -> list[Path]:
    out = []
    for top, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if hidden or not d.startswith("."))
        out += [Path(top, n) for n in sorted(names) if hidden or not n.startswith(".")]
    return out


# ---------------------------------------------------------------- summaries
def summarize(path: Path, text_column: str | None = None, label_column: str | None = None,
              path_column: str | None = None) -> tuple[dict[str, Any], dict[str, list]]:
    """The summary of ``path`` (JSON-ready) and, per class, a few samples for the grid
    (images: paths, PIL images or arrays)."""
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        return _summarize_folder(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _summarize_npz(path)
    if suffix in TABLE_SUFFIXES:
        columns = tables.read_table(path)
        if _is_image_table(list(columns), text_column, path_column):
            return _summarize_image_table(path, columns, path_column, label_column)
        return _summarize_table(path, _rows(columns), text_column, label_column), {}
    raise DataError(f"{path}: not a dataset dlexp reads; give a folder of class folders, an "
                    f".npz of arrays or a table ({', '.join(TABLE_SUFFIXES)})")


def _summarize_folder(root: Path) -> tuple[dict[str, Any], dict[str, list]]:
    items = scan_folder(root)
    images = [i for i in items if i[0].suffix.lower() in IMAGE_SUFFIXES]
    texts = [i for i in items if i[0].suffix.lower() in TEXT_SUFFIXES]
    if not items:
        raise DataError(f"{root}: no class folders of images or .txt files in it (expected "
                        f"{root}/<class>/<file> or {root}/train/<class>/<file>)")
    kind, chosen = ("image", images) if len(images) >= len(texts) else ("text", texts)
    summary: dict[str, Any] = {"path": str(root), "kind": f"{kind} folder",
                               **_counts([(label, split) for _, label, split in chosen])}
    samples = _file_facts(summary, chosen, kind)
    summary["not_data"] = [str(p) for p in not_data(root, chosen)]
    return summary, samples


def _file_facts(summary: dict[str, Any], chosen: list[Item], kind: str) -> dict[str, list]:
    """Add what the files say (unreadable ones, sizes and modes or lengths, duplicates) to
    ``summary``; returns the image samples per class."""
    read = _read_image if kind == "image" else _read_text
    with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 1) * 2)) as pool:
        facts = list(pool.map(read, [p for p, _, _ in chosen]))
    bad = [(p, f["error"]) for (p, _, _), f in zip(chosen, facts, strict=True) if "error" in f]
    summary["unreadable"] = [f"{p} ({e})" for p, e in bad]
    if kind == "image":
        summary |= _image_facts([f for f in facts if "error" not in f])
    else:
        summary |= _text_facts([(label, f["words"]) for (_, label, _), f
                                in zip(chosen, facts, strict=True) if "error" not in f])
    summary["duplicates"] = _duplicates(chosen, [f.get("sha1") for f in facts])
    samples: dict[str, list] = defaultdict(list)
    if kind == "image":
        for (path, label, _), f in zip(chosen, facts, strict=True):
            if "error" not in f and len(samples[label]) < SAMPLES_PER_CLASS:
                samples[label].append(path)
    return dict(samples)


def _counts(labels: list[tuple[str, str]]) -> dict[str, Any]:
    """Per class and split, sorted; the splits present ("all" for data without any)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for label, split in labels:
        counts[str(label)][split or "all"] += 1
    splits = [s for s in (*SPLITS, "all") if any(s in c for c in counts.values())]
    classes = sorted(counts, key=_class_key)
    return {"classes": classes, "splits": splits,
            "counts": {c: {s: counts[c][s] for s in splits} for c in classes},
            "total": len(labels)}


def _class_key(name: str) -> tuple:
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)


def _read_image(path: Path) -> dict[str, Any]:
    """Size, mode and content hash of one image, decoded whole (a truncated file fails only
    when its pixels are read)."""
    from PIL import Image

    try:
        data = path.read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                size, mode = im.size, im.mode
                im.load()
    except Exception as e:  # whatever the decoders raise means "unreadable"
        text = str(e).strip().splitlines()
        return {"error": text[0] if text else type(e).__name__}
    return {"size": size, "mode": mode, "sha1": hashlib.sha1(data).hexdigest()}


def _read_text(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return {"error": f"not UTF-8 (byte {e.start})"}
    except OSError as e:
        return {"error": e.strerror or str(e)}
    if not text.strip():
        return {"error": "empty text"}
    return {"words": len(text.split()), "sha1": hashlib.sha1(data).hexdigest()}


def _image_facts(facts: list[dict]) -> dict[str, Any]:
    sizes = Counter(f"{w}x{h}" for w, h in (f["size"] for f in facts))
    return {"image_sizes": dict(sizes.most_common()),
            "modes": dict(Counter(f["mode"] for f in facts).most_common())}


def _text_facts(words: list[tuple[str, int]]) -> dict[str, Any]:
    """Text lengths in words: min, median and max, overall and per class."""
    def stats(values: list[int]) -> dict[str, float]:
        return {"min": min(values), "median": statistics.median(values), "max": max(values)}
    by_class: dict[str, list[int]] = defaultdict(list)
    for label, n in words:
        by_class[str(label)].append(n)
    if not words:
        return {"words": {}, "words_per_class": {}}
    return {"words": stats([n for _, n in words]),
            "words_per_class": {c: stats(v) for c, v in sorted(by_class.items())}}


def _duplicates(items: list[Item], hashes: list[str | None]) -> list[dict[str, Any]]:
    """Groups of files with the same content; ``leak`` when a group spans splits (a test
    file also trained on), ``conflict`` when it spans classes."""
    groups: dict[str, list[Item]] = defaultdict(list)
    for item, digest in zip(items, hashes, strict=True):
        if digest is not None:
            groups[digest].append(item)
    return [{"files": [str(p) for p, _, _ in group],
             "leak": len({s for _, _, s in group}) > 1,
             "conflict": len({c for _, c, _ in group}) > 1}
            for group in groups.values() if len(group) > 1]


def _summarize_npz(path: Path) -> tuple[dict[str, Any], dict[str, list]]:
    import numpy as np

    from dlexp.data.arrays import checked_parts, read_npz

    parts = checked_parts(read_npz(path), str(path))
    labels = [(str(v), part) for part, (_, y) in parts.items() for v in y.tolist()]
    summary: dict[str, Any] = {"path": str(path), "kind": "arrays (.npz)", **_counts(labels)}
    summary["arrays"] = {part: {"x_shape": list(x.shape), "x_dtype": str(x.dtype),
                                "x_min": _number(x.min()), "x_max": _number(x.max()),
                                "y_dtype": str(y.dtype)}
                         for part, (x, y) in parts.items()}
    x, y = parts["train"]
    samples: dict[str, list] = {}
    if x.ndim > 2:  # images: the first few of each class
        for name in summary["classes"]:
            idx = np.flatnonzero(y.astype(str) == name)[:SAMPLES_PER_CLASS]
            samples[name] = [x[i] for i in idx]
    return summary, samples


def _number(v: Any) -> float | int:
    return v.item() if hasattr(v, "item") else v


# ---------------------------------------------------------------- tables
def _rows(columns: tables.Table) -> list[dict[str, Any]]:
    n = tables.num_rows(columns)
    return [{name: values[i] for name, values in columns.items()} for i in range(n)]


def _is_image_table(columns: list[str], text_column: str | None, path_column: str | None
                    ) -> bool:
    """A table of image paths (``--path-column``, or a path column and no text column)."""
    if path_column is not None:
        return True
    if text_column is not None or any(c in columns for c in TEXT_COLUMNS):
        return False
    return any(c in columns for c in PATH_COLUMNS)


def _summarize_image_table(path: Path, columns: tables.Table, path_column: str | None,
                           label_column: str | None) -> tuple[dict[str, Any], dict[str, list]]:
    """A table of image files (relative to its folder, or absolute) and their labels, read
    as ``data=image_folder data.table=`` reads it, summarised as an image folder is."""
    names = list(columns)
    file = _column(path, names, path_column, PATH_COLUMNS, "path")
    label = _column(path, names, label_column, LABEL_COLUMNS, "label")
    split = "split" if "split" in names else None
    base, chosen, missing = path.parent, [], []
    for i, (f, y) in enumerate(zip(columns[file], columns[label], strict=True)):
        if f in (None, "") or y in (None, ""):
            missing.append(f"row {i + 1} (no {'file' if f in (None, '') else 'label'})")
            continue
        part = SPLIT_ALIASES.get(str(columns[split][i]).strip().lower(), "") if split else ""
        chosen.append((base / str(f), _label_text(y), part))
    if not chosen:
        raise DataError(f"{path}: no rows with a file and a label")
    summary: dict[str, Any] = {"path": str(path), "kind": "image table", "columns": names,
                               "path_column": file, "label_column": label,
                               **_counts([(y, part) for _, y, part in chosen])}
    samples = _file_facts(summary, chosen, "image")
    summary["unreadable"] = missing + summary["unreadable"]
    summary["not_data"] = []
    return summary, samples


def _label_text(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _summarize_table(path: Path, rows: list[dict[str, Any]], text_column: str | None,
                     label_column: str | None) -> dict[str, Any]:
    if not rows:
        raise DataError(f"{path}: the table has no rows")
    columns = list(rows[0])
    text = _column(path, columns, text_column, TEXT_COLUMNS, "text")
    label = _column(path, columns, label_column, LABEL_COLUMNS, "label")
    split = "split" if "split" in columns else None
    labels = [(str(r.get(label)), SPLIT_ALIASES.get(str(r.get(split)).lower(), str(r.get(split)))
               if split else "") for r in rows]
    summary: dict[str, Any] = {"path": str(path), "kind": "text table", "columns": columns,
                               "text_column": text, "label_column": label,
                               **_counts(labels)}
    empty = [i + 1 for i, r in enumerate(rows) if not str(r.get(text) or "").strip()]
    summary["unreadable"] = [f"row {n} (empty text)" for n in empty]
    summary |= _text_facts([(lab, len(str(r.get(text) or "").split()))
                            for (lab, _), r in zip(labels, rows, strict=True)
                            if str(r.get(text) or "").strip()])
    seen: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        seen[str(r.get(text))].append(i)
    summary["duplicates"] = [
        {"files": [f"row {i + 1}" for i in group],
         "leak": len({labels[i][1] for i in group}) > 1,
         "conflict": len({labels[i][0] for i in group}) > 1}
        for key, group in seen.items() if len(group) > 1 and key.strip()]
    summary["not_data"] = []
    return summary


def _column(path: Path, columns: list[str], given: str | None, defaults: tuple[str, ...],
            what: str) -> str:
    if given is not None and given in columns:
        return given
    found = next((c for c in defaults if c in columns), None) if given is None else None
    if found is None:
        flag = f"--{what}-column"
        raise DataError(f"{path}: no {what} column {given or ' or '.join(defaults[:3])!r}; "
                        f"its columns are {', '.join(columns)}: name one with {flag}")
    return found


# ---------------------------------------------------------------- output
def sample_grid(samples: dict[str, list], out: Path) -> Path | None:
    """A PNG: one row per class (its name, then up to :data:`SAMPLES_PER_CLASS` samples scaled
    into :data:`TILE` pixels); None without image samples."""
    if not any(samples.values()):
        return None
    from PIL import Image, ImageDraw

    label_w, pad = 120, 4
    cols = max(len(v) for v in samples.values())
    grid = Image.new("RGB", (label_w + cols * (TILE + pad) + pad,
                             len(samples) * (TILE + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    for row, (name, tiles) in enumerate(samples.items()):
        y = pad + row * (TILE + pad)
        draw.text((pad, y + TILE // 2 - 6), name[:18], fill="black")
        for col, sample in enumerate(tiles):
            tile = _tile(sample)
            grid.paste(tile, (label_w + pad + col * (TILE + pad) + (TILE - tile.width) // 2,
                              y + (TILE - tile.height) // 2))
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    return out


def _tile(sample: Any) -> Any:
    """One sample (a path or an array) as an RGB thumbnail within TILE x TILE."""
    import numpy as np
    from PIL import Image, ImageOps

    if isinstance(sample, Path):
        with Image.open(sample) as im:
            image = ImageOps.exif_transpose(im).convert("RGB")
    else:
        a = np.asarray(sample, dtype=np.float64)
        a = a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a
        span = a.max() - a.min()
        a = (a - a.min()) / (span if span > 0 else 1) * 255
        image = Image.fromarray(a.astype(np.uint8)).convert("RGB")
    image.thumbnail((TILE, TILE), Image.Resampling.NEAREST if max(image.size) <= TILE
                    else Image.Resampling.LANCZOS)
    if max(image.size) < TILE:  # small images (MNIST's 28x28) scaled up, pixels kept sharp
        scale = TILE // max(image.size)
        image = image.resize((image.width * scale, image.height * scale),
                             Image.Resampling.NEAREST)
    return image


def markdown(summary: dict[str, Any]) -> str:
    """The summary as Markdown: the class table, then the findings."""
    splits = summary["splits"]
    lines = [f"# {summary['path']}", "",
             f"{summary['kind']}: {summary['total']} {_unit(summary)}, "
             f"{len(summary['classes'])} classes", "", "| class | " + " | ".join(splits) + " | total |",
             "| --- |" + " ---: |" * (len(splits) + 1)]
    for name in summary["classes"]:
        row = summary["counts"][name]
        lines.append(f"| {name} | " + " | ".join(str(row[s]) for s in splits)
                     + f" | {sum(row.values())} |")
    lines.append("")
    lines += _arrays_lines(summary) + _size_lines(summary) + _finding_lines(summary)
    return "\n".join(lines) + "\n"


def _unit(summary: dict[str, Any]) -> str:
    return {"arrays (.npz)": "samples", "text table": "rows"}.get(summary["kind"], "files")


def _arrays_lines(summary: dict[str, Any]) -> list[str]:
    return [f"- {part}: x {a['x_shape']} {a['x_dtype']} in [{a['x_min']:.4g}, {a['x_max']:.4g}]"
            f", y {a['y_dtype']}" for part, a in summary.get("arrays", {}).items()]


def _size_lines(summary: dict[str, Any]) -> list[str]:
    lines = []
    if summary.get("image_sizes"):
        lines.append("- image sizes: " + _top(summary["image_sizes"]))
        lines.append("- modes: " + _top(summary["modes"]))
    if summary.get("words"):
        w = summary["words"]
        lines.append(f"- words per text: min {w['min']}, median {w['median']:g}, max {w['max']}")
    if "text_column" in summary:
        lines.append(f"- columns: text {summary['text_column']!r}, label "
                     f"{summary['label_column']!r} (of {', '.join(summary['columns'])})")
    if "path_column" in summary:
        lines.append(f"- columns: path {summary['path_column']!r}, label "
                     f"{summary['label_column']!r} (of {', '.join(summary['columns'])})")
    return lines


def _finding_lines(summary: dict[str, Any]) -> list[str]:
    lines = []
    if summary.get("unreadable"):
        lines.append(f"- unreadable ({len(summary['unreadable'])}): "
                     + _some(summary["unreadable"]))
    for group in summary.get("duplicates", []):
        note = " (in different splits: leakage)" if group["leak"] else ""
        note += " (with different labels)" if group["conflict"] else ""
        lines.append(f"- duplicates{note}: " + " = ".join(group["files"]))
    if summary.get("not_data"):
        lines.append(f"- not data ({len(summary['not_data'])}): " + _some(summary["not_data"]))
    small = [c for c in summary["classes"] if sum(summary["counts"][c].values()) < 2]
    if small:
        lines.append(f"- classes with fewer than 2 samples: {', '.join(small)}")
    if "train" in summary["splits"]:
        unseen = [c for c in summary["classes"] if summary["counts"][c]["train"] == 0]
        if unseen:
            lines.append(f"- classes with no training samples: {', '.join(unseen)}")
    return lines or ["- no bad files, duplicates or stray files found"]


def _top(counts: dict[str, int], most: int = 5) -> str:
    shown = ", ".join(f"{k} ({n})" for k, n in list(counts.items())[:most])
    return shown + (f", and {len(counts) - most} more" if len(counts) > most else "")


def _some(items: list[str]) -> str:
    more = f"; and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return "; ".join(items[:SHOWN]) + more


def write(summary: dict[str, Any], samples: dict[str, list], out: Path) -> str:
    """``summary.md``, ``summary.json`` and ``samples.png`` in ``out``; the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    grid = sample_grid(samples, out / "samples.png")
    if grid is not None:
        summary["samples_png"] = str(grid)
    text = markdown(summary) + (f"\nsamples per class: {grid}\n" if grid else "")
    (out / "summary.md").write_text(text)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return text


def main(argv: list[str] | None = None, printer: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(prog="dlexp-data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path, help="a class folder, an .npz, or a table")
    parser.add_argument("--out", type=Path, default=Path("data_summary"),
                        help="where summary.md, summary.json and samples.png go "
                             "(default: ./data_summary)")
    parser.add_argument("--text-column", help="tables: the column of the texts")
    parser.add_argument("--label-column", help="tables: the column of the labels")
    parser.add_argument("--path-column", help="tables of images: the column of the image "
                                              "files (default: path, file, filename, image)")
    args = parser.parse_args(argv)
    try:
        summary, samples = summarize(args.path, args.text_column, args.label_column,
                                     args.path_column)
        text = write(summary, samples, args.out)
    except (DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    printer(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
