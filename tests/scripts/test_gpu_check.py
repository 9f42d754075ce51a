"""scripts/gpu_check.sh runs end to end here too: without CUDA it says so and runs the parts
that are valid on a CPU, shortened, and writes its report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO

pytestmark = pytest.mark.integration


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU variant; a GPU runs the real one")
def test_without_cuda_every_part_runs_and_is_reported(tmp_path: Path, tiny_data: Path) -> None:
    env = {**os.environ, "DLEXP_DATA_DIR": str(tiny_data), "PYTHON": sys.executable}
    done = subprocess.run([str(REPO / "scripts" / "gpu_check.sh"), str(tmp_path / "out")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "no CUDA" in done.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["cuda"] is False and report["machine"]["torch"] == torch.__version__
    assert report["pytest_gpu"]["exit"] == 0 and "skipped" in report["pytest_gpu"]["summary"][0]
    assert report["mnist_cnn_gpu"]["status"] == "ok"
    epochs = report["imdb_lstm_epoch"]
    assert set(epochs) == {"packed", "bucketed_unpacked", "unbucketed_unpacked"}
    assert all(e["status"] == "ok" and e["train/samples_per_s"] > 0 for e in epochs.values())
    assert {r["case"] for r in report["benchmark"]["results"]} == {"cnn (defaults)",
                                                                 "cnn (stripped)"}
    assert (tmp_path / "out" / "gpu_check.log").stat().st_size > 0
