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
    """The short message, one line, for an error a user can fix; None for a genuine bug."""
    message = _message(exc)
    return " ".join(message.split()) if message is not None else None


def _message(exc: BaseException) -> str | None:
    if isinstance(exc, USER_ERRORS + (MisconfigurationException,)):  # Lightning: bad settings
        return str(exc)
    if isinstance(exc, InstantiationException):  # a constructor refused a value
        cause = exc.__cause__
        key = str(exc).rsplit("full_key:", 1)[-1].strip() if "full_key:" in str(exc) else ""
        if isinstance(cause, USER_ERRORS + (ValueError, TypeError, MisconfigurationException)):
            named = not key or str(cause).startswith(f"{key}.")  # the message names it already
            return str(cause) if named else f"{key}: {cause}"
        if isinstance(cause, MemoryError) or "allocate" in str(cause):
            return f"{key or 'a setting'}: too large to build ({str(cause).splitlines()[0]})"
        return str(exc)
    return None
