"""One prepared check of dlexp's GPU paths (run by scripts/gpu_check.sh).

    python scripts/gpu_check.py OUT_DIR [--data DIR] [--budget-s 450]

Writes OUT_DIR/report.json: the machine (nvidia-smi, versions), `pytest -m gpu`,
`experiment=mnist_cnn_gpu` timed end to end with its test accuracy, one epoch of `imdb_lstm`
packed, bucketed-unpacked and unbucketed-unpacked in samples/s, and framework against a plain
loop for the CNN. Without CUDA it says so and runs every part that is valid on a CPU, shortened,
so the script itself is tested end to end anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def sh(cmd: list[str], timeout: float, **kw: Any) -> tuple[int, str, float]:
    """(exit code, output, seconds); output is printed as it comes, for the log."""
    start = time.perf_counter()
    print("$", " ".join(cmd), flush=True)
    try:
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                              **kw)
        code, out = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as e:
        code, out = 124, f"timed out after {timeout:.0f} s: {e}"
    print(out[-4000:], flush=True)
    return code, out, round(time.perf_counter() - start, 2)


def machine(cuda: bool) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cuda": torch.version.cuda, "cuda_available": cuda}
    for name in ("lightning", "hydra", "omegaconf", "torchmetrics", "tokenizers"):
        try:
            info[name] = __import__(name).__version__
        except Exception as e:  # reported, not fatal
            info[name] = f"missing ({type(e).__name__})"
    if cuda:
        info["device"] = torch.cuda.get_device_name(0)
        info["cudnn"] = torch.backends.cudnn.version()
    if shutil.which("nvidia-smi"):
        info["nvidia_smi"] = sh(["nvidia-smi"], 60)[1]
    return info


def train(overrides: list[str], data: Path, timeout: float) -> dict[str, Any]:
    """``python train.py`` timed end to end; its metrics.json."""
    with tempfile.TemporaryDirectory() as tmp:
        code, out, wall = sh([sys.executable, str(REPO / "train.py"), *overrides,
                              f"paths.data_dir={data}", f"hydra.run.dir={tmp}", "logger=none"],
                             timeout)
        path = Path(tmp) / "metrics.json"
        metrics = json.loads(path.read_text()) if path.is_file() else {}
    keep = ("status", "error", "test/acc", "val/acc", "fit_s", "wall_s", "epoch", "global_step",
            "train/samples_per_s")
    return {"exit": code, "process_s": wall, "command": " ".join(overrides),
            **{k: metrics.get(k) for k in keep}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--data", type=Path, default=Path(os.environ.get("DLEXP_DATA_DIR", "data")))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    cuda = torch.cuda.is_available()
    if not cuda:
        print("no CUDA: running the parts that are valid on a CPU, shortened", flush=True)
    # on a CPU every run is cut to a few batches: the point is that each part runs
    short = [] if cuda else ["trainer=cpu", "+trainer.limit_train_batches=3",
                             "+trainer.limit_val_batches=2", "+trainer.limit_test_batches=2",
                             "data.val_size=0.1"]
    report: dict[str, Any] = {"cuda": cuda, "machine": machine(cuda)}

    code, out, wall = sh([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-m", "gpu", "-rs", "tests/test_gpu.py"], 300)
    report["pytest_gpu"] = {"exit": code, "seconds": wall, "summary": out.strip().splitlines()[-1:]}

    report["mnist_cnn_gpu"] = train(["experiment=mnist_cnn_gpu", *short], args.data, 180)

    report["imdb_lstm_epoch"] = {
        name: train(["experiment=imdb_lstm", "trainer.max_epochs=1", "test=false",
                     "data.include_unsup=false", *extra, *short], args.data, 300)
        for name, extra in (("packed", ["model.packed=true"]),
                            ("bucketed_unpacked", []),
                            ("unbucketed_unpacked", ["data.bucket=false"]))}

    accelerator = "gpu" if cuda else "cpu"
    steps = ["--steps", "200", "--repeats", "3"] if cuda else [
        "--steps", "3", "--repeats", "1", "--warmup", "1", "--overrides", "data.val_size=0.1"]
    bench = args.out / "benchmark.json"
    code, out, wall = sh([sys.executable, str(REPO / "scripts" / "benchmark.py"), "--models",
                          "cnn", "--accelerator", accelerator, "--data-dir", str(args.data),
                          *steps, "--json", str(bench)], 240)
    report["benchmark"] = (json.loads(bench.read_text()) if code == 0 else
                           {"exit": code, "output": out[-2000:]})

    (args.out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out / 'report.json'}", flush=True)
    failed = [k for k, v in report.items() if isinstance(v, dict) and v.get("exit")]
    failed += [f"imdb_lstm_epoch/{k}" for k, v in report["imdb_lstm_epoch"].items() if v["exit"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
