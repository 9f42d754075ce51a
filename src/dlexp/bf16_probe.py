"""Is bf16 autocast faster than float32 on this CPU? Measured, for the CPUs where the answer
depends on the chip: those with AVX512_BF16's dot-product instructions but no AMX tiles (some
train a small CNN and an LSTM faster in bf16, others slower). A fraction of a second of
training steps, timed once per CPU and torch version in a fresh process (one thread per core,
the allocator setting training runs use, nothing left behind in the caller), and kept in the
user's cache, so later runs (and every DDP rank) read the same answer.

    python -m dlexp.bf16_probe THREADS   # prints the ratio; what step_ratio runs
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from dlexp.allocator import keep_freed_memory
from dlexp.cache import user_cache_dir

FILE = "bf16_probe.json"
VERSION = 2  # of the probe's workload: a changed probe measures again
log = logging.getLogger("dlexp.bf16_probe")


def step_ratio(machine: str, threads: int) -> float | None:
    """bf16 autocast's time per training step over float32's on this CPU: read from the cache,
    else measured on ``threads`` threads and kept there; None when the probe failed (asked
    again next time). ``machine`` names the CPU and its limits (the key, with torch's version:
    not the thread count, so that processes with fewer threads, DDP's, agree)."""
    key = f"{machine}|torch {torch.__version__}|probe {VERSION}"
    path = user_cache_dir() / FILE
    known = read(path)
    if key in known:
        return known[key]
    ratio = measure_in_a_new_process(threads)
    if ratio is not None:
        write(path, {**known, key: ratio})
    return ratio


def measure_in_a_new_process(threads: int, timeout: float = 300) -> float | None:
    try:
        done = subprocess.run([sys.executable, "-m", __name__, str(threads)],
                              capture_output=True, text=True, timeout=timeout, check=False)
        return float(done.stdout.split()[-1])
    except subprocess.TimeoutExpired:
        why = f"no answer in {timeout:g} s"
    except (IndexError, ValueError):
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    log.warning("the bf16 probe failed (%s); training in float32", why)
    return None


def read(path: Path) -> dict[str, float]:
    """The kept ratios; an unreadable or foreign file counts as empty (it is measured again)."""
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(known, dict):
        return {}
    return {k: float(v) for k, v in known.items() if isinstance(v, int | float)}


def write(path: Path, known: dict[str, float]) -> None:
    """Kept for the next run; a cache that cannot be written costs a new probe, not the run."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{time.time_ns()}.tmp")
        tmp.write_text(json.dumps(known, indent=1))
        tmp.replace(path)
    except OSError as e:
        log.debug("bf16 probe not cached: %s", e)


def measure(blocks: int = 12, steps: int = 2) -> float:
    """The fastest block in bf16 over the fastest in float32: the fastest block is the one
    least disturbed by anything else running."""
    times = interleaved(probe_step(), blocks, steps, warmup=3)
    return round(min(times[True]) / min(times[False]), 3)


def interleaved(step: Callable[[bool], None], blocks: int, steps: int,
                warmup: int) -> dict[bool, list[float]]:
    """Seconds per step of ``blocks`` blocks of ``steps`` steps in each precision (True: bf16),
    the two in alternating blocks, the order reversed every other block, so both see the same
    load; after ``warmup`` steps of each (oneDNN builds its primitives on first use)."""
    for bf16 in (False, True):
        for _ in range(warmup):
            step(bf16)
    times: dict[bool, list[float]] = {False: [], True: []}
    for block in range(blocks):
        for bf16 in (False, True) if block % 2 == 0 else (True, False):
            started = time.perf_counter()
            for _ in range(steps):
                step(bf16)
            times[bf16].append((time.perf_counter() - started) / steps)
    return times


def probe_step() -> Callable[[bool], None]:
    """Forward and backward of a small CNN and a one-layer LSTM, the two kinds of network
    whose bf16 kernels differ most from chip to chip, on fixed random inputs."""
    gen = torch.Generator().manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3),
                        nn.ReLU(), nn.Flatten(), nn.Linear(32 * 10 * 10, 128), nn.ReLU(),
                        nn.Linear(128, 10))
    lstm = nn.LSTM(128, 128, batch_first=True)
    images = torch.randn(128, 1, 28, 28, generator=gen)
    sequences = torch.randn(32, 64, 128, generator=gen)
    params = [*cnn.parameters(), *lstm.parameters()]

    def step(bf16: bool) -> None:
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            loss = cnn(images).float().sum() + lstm(sequences)[0].float().sum()
        loss.backward()
        for p in params:
            p.grad = None

    return step


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dlexp.bf16_probe",
                                     description="bf16 / float32 step time on this CPU")
    parser.add_argument("threads", type=int, help="CPU threads to time on (>= 1)")
    threads = parser.parse_args(argv).threads
    if threads < 1:
        parser.error(f"threads must be >= 1, got {threads}")
    keep_freed_memory()  # as training runs do (keep_memory: true): steady step times
    torch.set_num_threads(threads)
    print(measure())


if __name__ == "__main__":
    main()
