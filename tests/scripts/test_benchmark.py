"""scripts/benchmark.py runs end to end on tiny data (the measurements themselves belong to the
script, never to timed tests)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, script_module

from dlexp import hardware

bench = script_module("benchmark")

SHORT = ["--steps", "3", "--warmup", "1", "--repeats", "2"]


def _results(path: Path) -> dict[str, dict]:
    return {f"{r['bench']}/{r['case']}": r for r in json.loads(path.read_text())["results"]}


def test_mnist_framework_and_plain_are_both_measured(tmp_path: Path, tiny_mnist: Path) -> None:
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    assert bench.main([*SHORT, "--data-dir", str(tiny_mnist), "--models", "mlp", "cnn",
                       "--overrides", "data.val_size=100", "--json", str(out),
                       "--plot", str(png)]) == 0
    results = _results(out)
    assert set(results) == {f"mnist/{m} ({s})" for m in ("mlp", "cnn")
                            for s in ("defaults", "stripped")}
    for r in results.values():
        assert r["paired"]  # CPU: one plain step after each framework step
        assert len(r["runs"]["framework"]) == len(r["runs"]["plain"]) == 2
        assert all(rate > 0 for rates in r["runs"].values() for rate in rates)
        assert math.isfinite(r["ratio"]["median"]) and r["ratio"]["median"] > 0
    assert png.stat().st_size > 0
    meta = json.loads(out.read_text())["meta"]
    assert (meta["precision"], meta["precision_reason"]) == hardware.resolve_precision("cpu")
    assert meta["cpu"]["cpu_class"] == hardware.cpu_info().cpu_class


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_a_mixed_precision_runs_on_both_sides(tmp_path: Path, tiny_mnist: Path,
                                              precision: str) -> None:
    out = tmp_path / "b.json"
    assert bench.main([*SHORT, "--data-dir", str(tiny_mnist), "--models", "mlp", "--setups",
                       "stripped", "--precision", precision, "--overrides", "data.val_size=100",
                       "--json", str(out)]) == 0
    meta = json.loads(out.read_text())["meta"]
    assert (meta["precision"], meta["precision_reason"]) == (precision, "given")


def test_auto_is_float32_on_a_cpu_held_to_avx2(tmp_path: Path, tiny_mnist: Path) -> None:
    env = {**os.environ, **hardware.AVX2_LIMITS}
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "benchmark.py"), *SHORT,
                           "--data-dir", str(tiny_mnist), "--models", "mlp", "--setups",
                           "stripped", "--overrides", "data.val_size=100"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "precision 32-true: the CPU (AVX2) has no native bf16" in done.stdout


def test_one_setup_alone(tmp_path: Path, tiny_mnist: Path) -> None:
    out = tmp_path / "b.json"
    assert bench.main([*SHORT, "--data-dir", str(tiny_mnist), "--models", "mlp", "--setups",
                       "defaults", "--overrides", "data.val_size=100", "--schedule", "alternate",
                       "--json", str(out)]) == 0
    assert set(_results(out)) == {"mnist/mlp (defaults)"}


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
