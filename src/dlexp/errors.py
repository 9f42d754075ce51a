"""User-facing errors: entry points print these as one short message, no traceback."""

from __future__ import annotations

from hydra.errors import InstantiationException
from lightning.fabric.utilities.exceptions import MisconfigurationException


class ConfigError(ValueError):
    """A config value or combination that cannot work, with what to change."""


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or from another model."""


class DataError(RuntimeError):
    """Data a user must fix: missing, corrupt or inconsistent files."""


class Diverged(ArithmeticError):
    """Training blew up: a loss that is NaN, infinite, or far above where it started."""


class ExportError(RuntimeError):
    """A network that could not be exported, or whose export disagrees with it."""


USER_ERRORS = (ConfigError, CheckpointError, DataError, Diverged, ExportError)


def user_message(exc: BaseException) -> str | None:
    """The short message for an error a user can fix, or None for a genuine bug."""
    if isinstance(exc, USER_ERRORS + (MisconfigurationException,)):  # Lightning: bad settings
        return str(exc)
    if isinstance(exc, InstantiationException):  # a bad value rejected by a constructor
        cause = exc.__cause__
        if isinstance(cause, USER_ERRORS + (ValueError, TypeError)):
            key = str(exc).rsplit("full_key:", 1)[-1].strip() if "full_key:" in str(exc) else ""
            named = not key or str(cause).startswith(f"{key}.")  # the message names it already
            return str(cause) if named else f"{key}: {cause}"
        return str(exc)
    return None
