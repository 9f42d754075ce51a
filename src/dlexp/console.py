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

# Lightning's info lines that tell a dlexp user nothing: an advertisement, and the notice that
# the ModelSummary dlexp configures itself replaces Lightning's default one
NOTICES = ("💡 Tip:", "Trainer already configured with model summary callbacks")


def _not_a_notice(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(NOTICES)  # one function: added once however often


def quiet_lightning_notices() -> None:
    """Drop lines Lightning 2.6 prints on every run (:data:`NOTICES`), a deprecation inside its
    own pytree helper, and its hint to prepend ``srun`` wherever Slurm is installed (a login
    node, a workstation with a local cluster) though this run is not a Slurm job."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_not_a_notice)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system")


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
