"""The Slurm launcher's watcher: a request the cluster can never satisfy is cancelled and named
in one line; jobs waiting for free resources keep waiting with a status line."""

from __future__ import annotations

import _thread
import logging
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hydra_plugins.dlexp import slurm_launcher
from hydra_plugins.dlexp.slurm_launcher import ArrayWatcher

PARAMS = {"cpus_per_task": 4, "mem_gb": 16, "timeout_min": 60, "gpus_per_node": None}


def _watch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, states: list[tuple[str, str, str]],
           ) -> tuple[ArrayWatcher, list[list[str]]]:
    (tmp_path / "123_0").mkdir()
    (tmp_path / "123_1").mkdir()
    (tmp_path / "not_a_job").mkdir()
    monkeypatch.setattr(slurm_launcher, "squeue",
                        lambda arrays: states if arrays == ["123"] else [])
    cancelled: list[list[str]] = []
    monkeypatch.setattr(slurm_launcher.subprocess, "run",
                        lambda cmd, **kw: cancelled.append(cmd) or subprocess.CompletedProcess(
                            cmd, 0))
    monkeypatch.setattr(slurm_launcher._thread, "interrupt_main", lambda: None)
    watcher = ArrayWatcher(tmp_path, PARAMS, poll_s=0.01, report_s=0.0)
    return watcher, cancelled


def test_an_unsatisfiable_request_is_cancelled_and_named(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    watcher, cancelled = _watch(tmp_path, monkeypatch, [("123_0", "PENDING", "PartitionConfig"),
                                                        ("123_1", "PENDING", "PartitionConfig")])
    watcher.start()
    watcher.join(timeout=10)
    assert not watcher.is_alive() and cancelled == [["scancel", "123"]]
    assert watcher.refused == (
        "Slurm can never start these jobs (PartitionConfig: the request exceeds what the "
        "partition, account or QOS allows; asked for cpus_per_task=4, mem_gb=16, "
        "timeout_min=60): lower hydra.launcher.cpus_per_task and hydra.launcher.mem_gb (or "
        "timeout_min, gpus_per_node), or pick another hydra.launcher.partition")


def test_jobs_waiting_for_resources_keep_waiting_with_a_status_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    watcher, cancelled = _watch(tmp_path, monkeypatch, [("123_0", "PENDING", "Resources"),
                                                        ("123_1", "RUNNING", "None")])
    with caplog.at_level(logging.INFO, logger=slurm_launcher.__name__):
        watcher.start()
        watcher.join(timeout=0.3)
        watcher.stop()
        watcher.join(timeout=10)
    assert watcher.refused is None and cancelled == []
    assert "slurm: 1 pending (Resources), 1 running" in caplog.text


def test_the_watcher_can_stop_a_sweep_started_with_sigint_ignored() -> None:
    """nohup, or ``&`` in a script: SIGINT is ignored, and interrupt_main() alone would do
    nothing, leaving the sweep waiting forever for the jobs it cancelled."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with pytest.raises(KeyboardInterrupt), slurm_launcher.interruptible():
            _thread.interrupt_main()
            time.sleep(1)  # the interrupt arrives between two bytecodes, well before this ends
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # as the user had it
    finally:
        signal.signal(signal.SIGINT, previous)
