"""What the terminal shows and how a command's process ends (run_as_process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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
