"""scripts/benchmark.py and scripts/overhead_probe.py run end to end on tiny data (the
measurements themselves belong to the scripts, never to timed tests)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

spec = importlib.util.spec_from_file_location("benchmark", REPO / "scripts" / "benchmark.py")
bench = importlib.util.module_from_spec(spec)
sys.modules["benchmark"] = bench  # its dataclasses look their module up
spec.loader.exec_module(bench)

SHORT = ["--steps", "3", "--warmup", "1", "--repeats", "2"]


@pytest.fixture(autouse=True)
def _restore_cuda_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() unsets Lightning's CUDA-check variable for the plain loop; put it back after."""
    monkeypatch.delenv("PYTORCH_NVML_BASED_CUDA_CHECK", raising=False)


def _results(path: Path) -> dict[str, dict]:
    return {f"{r['bench']}/{r['case']}": r for r in json.loads(path.read_text())["results"]}


def test_mnist_framework_and_plain_are_both_measured(tmp_path: Path, tiny_mnist: Path) -> None:
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    assert bench.main([*SHORT, "--data-dir", str(tiny_mnist), "--models", "mlp", "cnn",
                       "--overrides", "data.val_size=100", "--json", str(out),
                       "--plot", str(png)]) == 0
    results = _results(out)
    assert set(results) == {"mnist/mlp", "mnist/cnn"}
    for r in results.values():
        assert r["paired"]  # CPU: one plain step after each framework step
        assert len(r["runs"]["framework"]) == len(r["runs"]["plain"]) == 2
        assert all(rate > 0 for rates in r["runs"].values() for rate in rates)
        assert math.isfinite(r["ratio"]["median"]) and r["ratio"]["median"] > 0
    assert png.stat().st_size > 0


def test_strict_fails_below_the_target(tmp_path: Path, tiny_mnist: Path) -> None:
    args = [*SHORT, "--data-dir", str(tiny_mnist), "--models", "mlp", "--overrides",
            "data.val_size=100", "--schedule", "alternate"]
    assert bench.main([*args, "--strict", "--target", "100"]) == 2  # no framework is 100x
    assert bench.main([*args, "--strict", "--target", "0.001"]) == 0


def test_a_setting_the_plain_loop_lacks_is_refused(tmp_path: Path, tiny_mnist: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    assert bench.main([*SHORT, "--data-dir", str(tiny_mnist), "--models", "mlp",
                       "--overrides", "scheduler=cosine"]) == 1
    assert "scheduler=none" in capsys.readouterr().err


def test_missing_mnist_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert bench.main([*SHORT, "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: MNIST not found") and "\n" not in err


def test_imdb_benchmarks_run(tmp_path: Path, tiny_imdb: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLEXP_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "imdb.json"
    assert bench.main(["--bench", "imdb_lstm", "imdb_batching", "imdb_tokenize", "--steps", "2",
                       "--warmup", "1", "--repeats", "1", "--text-batch-size", "8",
                       "--data-dir", str(tiny_imdb), "--overrides", "data.val_size=20",
                       "--json", str(out)]) == 0
    results = _results(out)
    assert set(results) == {"imdb/lstm", "imdb/bucketing", "imdb/packing", "imdb/tokenize"}
    assert results["imdb/lstm"]["unit"] == "tokens/s"
    assert all(rate > 0 for r in results.values() for rates in r["runs"].values()
               for rate in rates)


def test_overhead_probe_reports_each_condition(tiny_mnist: Path) -> None:
    # a subprocess: --patched monkeypatches Lightning, which must not leak into other tests
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "overhead_probe.py"), "--steps", "3",
         "--warmup", "1", "--repeats", "1", "--flush-mb", "0", "1", "--patched",
         "--data-dir", str(tiny_mnist), "--overrides", "data.val_size=100"],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    assert "patched Lightning" in lines[0]
    assert [line.split(":")[0] for line in lines[1:]] == ["flush   0 MB", "flush   1 MB"]
    assert all("ms/step" in line for line in lines[1:])
