"""What the terminal shows and how a command's process ends (run_as_process)."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from dlexp.console import quiet_lightning_notices

SCRIPT = """
import atexit, sys, threading, time
from pathlib import Path
from dlexp.console import run_as_process

out = Path(sys.argv[1])

def main():
    atexit.register(lambda: (out / "atexit").write_text("ran"))
    def late():
        time.sleep(0.3)
        (out / "thread").write_text("joined")
    threading.Thread(target=late).start()
    print("unflushed", end="")
    {end}

run_as_process(main)
"""


@pytest.mark.parametrize(("end", "code", "stderr"), [
    ("pass", 0, ""),
    ("sys.exit(3)", 3, ""),
    ("sys.exit('error: a message')", 1, "error: a message\n"),
])
def test_a_process_ends_as_python_would(tmp_path: Path, end: str, code: int, stderr: str) -> None:
    script = textwrap.dedent(SCRIPT).replace("{end}", end)
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert (done.returncode, done.stderr, done.stdout) == (code, stderr, "unflushed")
    assert (tmp_path / "thread").read_text() == "joined"  # non-daemon threads are joined
    assert (tmp_path / "atexit").read_text() == "ran"  # then the exit handlers run


def test_lightning_notices_that_tell_nothing_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    quiet_lightning_notices()
    quiet_lightning_notices()  # a second run in the same process adds nothing
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    assert len(logger.filters) == 1
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("Trainer already configured with model summary callbacks: [...]")
        logger.info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        quiet_lightning_notices()  # its filters go in front of the "default" one
        warnings.warn("The `srun` command is available on your system but is not used.",
                      stacklevel=1)
        warnings.warn("something else", stacklevel=1)
    assert [str(w.message) for w in seen] == ["something else"]
