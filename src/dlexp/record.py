"""A run's record, ``metrics.json``: written when the run starts (``status: running``) and
rewritten when it ends, so a reader can tell a killed run from one that never started."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic (a temporary file, then a rename): a reader never sees half a file. NaN and
    infinities become null, so the file stays valid JSON."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in data.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


class RunRecord:
    """``metrics.json`` of one run. Only the process that ``writes`` touches the file (rank 0
    under DDP); every process keeps the same dict."""

    def __init__(self, path: Path, writes: bool = True, **fields: Any) -> None:
        self.path, self.writes = path, writes
        self.metrics: dict[str, Any] = {"status": "running", **fields}
        self._start = time.perf_counter()
        self._write()

    def update(self, values: dict[str, Any]) -> None:
        self.metrics.update(values)

    def finish(self, status: str, error: str | None = None) -> dict[str, Any]:
        self.metrics["status"] = status
        if error is not None:
            self.metrics["error"] = error
        self.metrics["wall_s"] = round(time.perf_counter() - self._start, 2)
        self._write()
        return self.metrics

    def _write(self) -> None:
        if self.writes:
            write_json(self.path, self.metrics)
