"""dlexp.bf16_probe: bf16 against float32 step times, measured once per CPU in a fresh process
and kept in the user's cache; a probe that fails or a cache that cannot be written costs
nothing but float32."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dlexp import bf16_probe, hardware


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[int]:
    """The cache in a temporary folder, and the fresh-process measurement counted (0.7 each)."""
    monkeypatch.setenv("DLEXP_CACHE_DIR", str(tmp_path / "cache"))
    calls: list[int] = []
    monkeypatch.setattr(bf16_probe, "measure_in_a_new_process",
                        lambda threads: calls.append(threads) or 0.7)
    return calls


def test_a_cpu_is_measured_once_and_read_from_the_cache(measured: list[int],
                                                        tmp_path: Path) -> None:
    assert bf16_probe.step_ratio("cpu A", 2) == 0.7
    assert bf16_probe.step_ratio("cpu A", 2) == 0.7
    assert len(measured) == 1
    assert bf16_probe.step_ratio("cpu B", 2) == 0.7  # another CPU (or limits): measured again
    assert len(measured) == 2
    kept = json.loads((tmp_path / "cache" / bf16_probe.FILE).read_text())
    assert sorted(k.split("|")[0] for k in kept) == ["cpu A", "cpu B"]
    assert all("|torch " in k and "|probe " in k for k in kept)
    assert bf16_probe.step_ratio("cpu A", 1) == 0.7  # a DDP rank with one thread: the same
    assert measured == [2, 2]


def test_a_damaged_cache_is_measured_again(measured: list[int], tmp_path: Path) -> None:
    path = tmp_path / "cache" / bf16_probe.FILE
    path.parent.mkdir(parents=True)
    for damaged in ("{not json", "[1, 2]", json.dumps({"x": "fast"})):
        path.write_text(damaged)
        assert bf16_probe.step_ratio("cpu A", 2) == 0.7
        path.write_text(damaged)
    assert len(measured) == 3


def test_an_unwritable_cache_costs_a_probe_not_the_run(measured: list[int], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("DLEXP_CACHE_DIR", str(blocked / "cache"))  # below a file: no folder
    assert bf16_probe.step_ratio("cpu A", 2) == bf16_probe.step_ratio("cpu A", 2) == 0.7
    assert len(measured) == 2


def test_a_failed_probe_means_float32_and_is_asked_again(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DLEXP_CACHE_DIR", str(tmp_path / "cache"))
    failed = subprocess.CompletedProcess([], 1, stdout="", stderr="Traceback\nRuntimeError: no")
    monkeypatch.setattr(bf16_probe.subprocess, "run", lambda *a, **kw: failed)
    with caplog.at_level(logging.WARNING):
        assert bf16_probe.step_ratio("cpu A", 2) is None
    assert "the bf16 probe failed (RuntimeError: no); training in float32" in caplog.text
    assert not (tmp_path / "cache" / bf16_probe.FILE).exists()

    def hangs(*args: object, **kw: object) -> None:
        raise subprocess.TimeoutExpired("probe", 300)

    monkeypatch.setattr(bf16_probe.subprocess, "run", hangs)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert bf16_probe.step_ratio("cpu A", 2) is None
    assert "the bf16 probe failed (no answer in 300 s); training in float32" in caplog.text


@pytest.mark.skipif(not hardware.cpu_info().onednn_bf16,
                    reason="oneDNN has no bf16 on this CPU (no bf16 LSTM): the probe runs only "
                           "where bf16 is native")
def test_the_probe_process_prints_a_ratio() -> None:
    done = subprocess.run([sys.executable, "-m", "dlexp.bf16_probe", "1"], capture_output=True,
                          text=True, timeout=300, env=os.environ)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 0.05 < float(done.stdout.split()[-1]) < 20


@pytest.mark.parametrize("arg", ["abc", "0"])
def test_the_probe_process_refuses_a_bad_thread_count_in_one_line(arg: str) -> None:
    done = subprocess.run([sys.executable, "-m", "dlexp.bf16_probe", arg], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "threads" in done.stderr.strip().splitlines()[-1]
