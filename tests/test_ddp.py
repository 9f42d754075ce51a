"""DDP on CPU: two real processes over gloo produce the same run layout as one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, TINY_DATA


def test_ddp_cpu_two_processes(tmp_path: Path, tiny_mnist: Path) -> None:
    args = [sys.executable, str(REPO / "train.py"), "trainer=ddp_cpu", "model=mlp",
            "model.hidden=[32]", "trainer.max_epochs=2", f"paths.data_dir={tiny_mnist}",
            f"paths.log_dir={tmp_path}", "~callbacks.progress_bar", *TINY_DATA]
    result = subprocess.run(args, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Starting with 2 processes" in result.stdout + result.stderr
    (run_dir,) = (tmp_path / "train" / "runs").iterdir()  # children reuse the parent's dir
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["epoch"] == 2
    assert metrics["test/acc"] > 0.5
    # 500 training samples (600 - 100 val), batch 32, 2 ranks: 8 steps per epoch
    assert metrics["global_step"] == 2 * 8
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert Path(metrics["best_ckpt"]).parent == run_dir / "checkpoints"
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "figures" / "confusion_matrix.png").is_file()
