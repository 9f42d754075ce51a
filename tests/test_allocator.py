"""dlexp.allocator: glibc keeps freed buffers when asked; elsewhere nothing changes."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from dlexp import allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_accepts_the_kept_memory_settings() -> None:
    out = subprocess.run([sys.executable, "-c", "from dlexp import allocator; "
                          "print(allocator.keep_freed_memory())"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"


def test_keep_memory_is_a_no_op_without_mallopt(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoMallopt:  # macOS's libc
        def __init__(self, name: str) -> None:
            pass

    monkeypatch.setattr(allocator.ctypes, "CDLL", NoMallopt)
    assert allocator.keep_freed_memory() is False
