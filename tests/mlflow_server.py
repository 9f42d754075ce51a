"""A real ``mlflow server`` for tests: SQLite store and artifacts in a folder, on a free local
port, waited for and always stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

START_S = 180  # the server's first start creates its database, on 2 busy cores


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
            return response.status == 200
    except OSError:  # not listening yet
        return False


@contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    """``mlflow server --backend-store-uri sqlite:///<folder>/server.db``; its URL once it
    answers ``/health``."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = folder / f"mlflow-server-{port}.log"
    cmd = [sys.executable, "-m", "mlflow", "server",
           "--backend-store-uri", f"sqlite:///{folder}/server.db",
           "--artifacts-destination", str(folder / "artifacts"),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with open(log, "w") as out:
        process = subprocess.Popen(cmd, cwd=folder, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # its workers: one group
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_S
        while not healthy(url):
            if process.poll() is not None:
                pytest.fail(f"mlflow server exited ({process.returncode}): "
                            f"{log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server at {url}: no answer within {START_S} s: "
                            f"{log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """The server and its workers (the process group it leads)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=20)
            return
        except subprocess.TimeoutExpired:
            continue
