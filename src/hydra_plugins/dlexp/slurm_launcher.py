"""hydra-submitit-launcher's Slurm launcher, watching the job array while the sweep waits: a
request the cluster can never satisfy ends the sweep in one line that names the settings to
lower, instead of a silent wait forever; jobs waiting for free resources keep waiting, with a
status line every minute. Used by ``hydra/launcher=slurm``."""

from __future__ import annotations

import _thread
import logging
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.errors import CompactHydraException

try:
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher as base
except ImportError:  # the `sweep` extra is not installed: nothing to wrap
    base = None

log = logging.getLogger(__name__)
# squeue reasons that no amount of waiting resolves: the request exceeds the partition, the
# account or the QOS (squeue --help-reasons, Slurm's "Job Reason Codes")
UNSATISFIABLE = {"PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit",
                 "BadConstraints", "InvalidAccount", "InvalidQOS", "QOSMaxCpuPerJobLimit",
                 "QOSMaxMemoryPerJob", "QOSMaxGRESPerJob", "QOSMaxNodePerJobLimit",
                 "QOSMaxWallDurationPerJobLimit", "AssocMaxCpuPerJobLimit",
                 "AssocMaxNodePerJobLimit", "AssocMaxWallDurationPerJobLimit"}
JOB_DIR = re.compile(r"(\d+)(?:_\d+)?")  # <array>_<task>, or <job> alone


def refusal(reason: str, params: dict[str, Any]) -> str:
    asked = ", ".join(f"{k}={params[k]}" for k in ("cpus_per_task", "mem_gb", "gpus_per_node",
                                                   "tasks_per_node", "nodes", "timeout_min")
                      if params.get(k) is not None)
    return (f"Slurm can never start these jobs ({reason}: the request exceeds what the "
            f"partition, account or QOS allows; asked for {asked}): lower "
            f"hydra.launcher.cpus_per_task and hydra.launcher.mem_gb (or timeout_min, "
            f"gpus_per_node), or pick another hydra.launcher.partition")


class ArrayWatcher(threading.Thread):
    """Polls ``squeue`` for the arrays submitit has written under ``folder`` (one
    ``<array>_<task>`` directory per job, ``<job>`` for a single one). Sets ``refused`` and cancels the arrays when one
    waits for a reason that never clears."""

    def __init__(self, folder: Path, params: dict[str, Any], poll_s: float = 5.0,
                 report_s: float = 60.0) -> None:
        super().__init__(daemon=True)
        self.folder, self.params, self.poll_s, self.report_s = folder, params, poll_s, report_s
        self.refused: str | None = None
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        last_report = time.monotonic()
        while not self._stopping.wait(self.poll_s):
            arrays = self.arrays()
            states = squeue(arrays) if arrays else []
            stuck = sorted({r for _, state, r in states if state == "PENDING"} & UNSATISFIABLE)
            if stuck:
                self.refused = refusal(stuck[0], self.params)
                subprocess.run(["scancel", *arrays], capture_output=True, timeout=30)
                # submitit would wait for the cancelled jobs' results forever (without Slurm
                # accounting it cannot see that they ended): stop the waiting thread
                _thread.interrupt_main()
                return
            if states and time.monotonic() - last_report >= self.report_s:
                counts = Counter(f"{s.lower()}" + (f" ({r})" if s == "PENDING" else "")
                                 for _, s, r in states)
                log.info("slurm: %s", ", ".join(f"{n} {what}" for what, n in counts.items()))
                last_report = time.monotonic()

    def arrays(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted({m.group(1) for d in self.folder.iterdir()
                       if d.is_dir() and (m := JOB_DIR.fullmatch(d.name))})


def squeue(arrays: list[str]) -> list[tuple[str, str, str]]:
    """(job id, state, reason) of the arrays' jobs still queued or running."""
    done = subprocess.run(["squeue", "-h", "-r", "-j", ",".join(arrays), "-o", "%i|%T|%r"],
                          capture_output=True, text=True, timeout=30)
    return [tuple(line.split("|", 2)) for line in done.stdout.splitlines() if line.count("|") == 2]


@contextmanager
def interruptible() -> Iterator[None]:
    """Let the watcher's ``interrupt_main()`` reach the main thread: it works only while Python
    handles SIGINT, and a sweep started with nohup, or with ``&`` from a script, has it ignored."""
    ignored = (threading.current_thread() is threading.main_thread()
               and signal.getsignal(signal.SIGINT) == signal.SIG_IGN)
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


if base is not None:

    class SlurmLauncher(base.SlurmLauncher):
        """``hydra_submitit_launcher``'s Slurm launcher with an :class:`ArrayWatcher`."""

        def launch(self, job_overrides: Any, initial_job_idx: int) -> Any:
            folder = Path(str(self.config.hydra.sweep.dir)) / ".submitit"
            watcher = ArrayWatcher(folder, dict(self.params))
            watcher.start()
            try:
                with interruptible():
                    return super().launch(job_overrides, initial_job_idx)
            except (Exception, KeyboardInterrupt):
                if watcher.refused:
                    raise CompactHydraException(watcher.refused) from None
                raise
            finally:
                watcher.stop()
