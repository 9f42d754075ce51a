"""Transfer learning side by side: pretrain on digits 0-4, then learn digits 5-9 from 50 labels
per class four ways (scratch, feature_extractor, finetune, gradual) and print a table.

    python scripts/transfer_compare.py                       # pretrain, then the four runs
    python scripts/transfer_compare.py --source <last.ckpt>  # reuse a pretrained network
    python scripts/transfer_compare.py -- paths.data_dir=...  # extra overrides for every run

Each run is a plain ``train.py`` job with its own run directory; the table reads their
metrics.json files.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODES = ("none", "feature_extractor", "finetune", "gradual")
LABELS = {"none": "scratch"}


def run(name: str, log_dir: Path, overrides: list[str]) -> dict:
    """One ``train.py`` job in ``log_dir/name``; its metrics.json (status failed if missing)."""
    out = log_dir / name
    cmd = [sys.executable, str(REPO / "train.py"), f"hydra.run.dir={out}", *overrides]
    print("$", " ".join(cmd[1:]), flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    path = out / "metrics.json"
    metrics = json.loads(path.read_text()) if path.is_file() else {"status": "failed"}
    metrics["process_s"] = round(time.perf_counter() - start, 1)
    if proc.returncode != 0:
        metrics.setdefault("error", proc.stderr.strip().splitlines()[-1:] or ["?"])
    return metrics


def table(rows: list[tuple[str, dict]]) -> str:
    lines = ["| run | test acc | val acc | epochs | wall s |", "| --- | --- | --- | --- | --- |"]
    for name, m in rows:
        if m.get("status") != "ok":
            error = str(m.get("error")).splitlines()[0]
            lines.append(f"| {name} | failed: {error} | | | |")
            continue
        lines.append(f"| {name} | {m['test/acc']:.4f} | {m['val/acc']:.4f} | {m['epoch']} | "
                     f"{m['wall_s']:.0f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", help="a pretrained .ckpt (default: run the pretraining)")
    parser.add_argument("--log-dir", default="outputs/transfer_compare")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run")
    args = parser.parse_args()
    log_dir = Path(args.log_dir).resolve() / time.strftime("%Y-%m-%d_%H-%M-%S")
    rows: list[tuple[str, dict]] = []
    source = args.source
    if source is None:
        pre = run("pretrain", log_dir, ["experiment=mnist_transfer_pretrain", *args.overrides])
        rows.append(("pretrain (digits 0-4, all labels)", pre))
        if pre.get("status") != "ok":
            print(table(rows))
            return 1
        source = str(log_dir / "pretrain" / "checkpoints" / "last.ckpt")
    for mode in MODES:
        overrides = ["experiment=mnist_transfer", f"transfer={mode}", *args.overrides]
        if mode != "none":
            overrides.append(f"transfer.source={source}")
        rows.append((LABELS.get(mode, mode), run(mode, log_dir, overrides)))
    print(f"\ndigits 5-9, 50 labels per class (source: {source})\n")
    print(table(rows))
    return 0 if all(m.get("status") == "ok" for _, m in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
