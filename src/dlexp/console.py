"""What a user sees in the terminal: one ``error:`` line for a mistake they can fix, and none
of Lightning's notices that tell them nothing."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any, NoReturn


def quiet_lightning_notices() -> None:
    """Drop two lines Lightning 2.6 prints on every run: the litlogger advertisement and a
    deprecation inside its own pytree helper."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: not str(record.msg).startswith("💡 Tip:"))
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def print_error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def run_as_process(main: Callable[[], Any]) -> NoReturn:
    """Run a command's ``main`` and end the process as Python would (non-daemon threads
    joined, ``atexit`` handlers run: loggers flushed and closed, streams flushed) but without
    tearing down every loaded module one by one, which costs torch, Lightning and their
    dependencies most of a second for nothing. The exit status is kept: ``sys.exit(1)`` and
    Hydra's own exits end the same way."""
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code
    if isinstance(code, str):  # sys.exit("message"): printed, status 1, as Python does
        print(code, file=sys.stderr)
        code = 1
    # what the interpreter itself does first: the thread-exit hooks (concurrent.futures and
    # joblib stop their executors there), then every non-daemon thread joined
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code or 0)
