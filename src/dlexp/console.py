"""What a user sees in the terminal: one ``error:`` line for a mistake they can fix, and none
of Lightning's notices that tell them nothing."""

from __future__ import annotations

import logging
import sys
import warnings


def quiet_lightning_notices() -> None:
    """Drop two lines Lightning 2.6 prints on every run: the litlogger advertisement and a
    deprecation inside its own pytree helper."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: not str(record.msg).startswith("💡 Tip:"))
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def print_error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
