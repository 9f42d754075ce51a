"""The error type for data a user must fix (missing, corrupt or inconsistent files)."""


class DataError(RuntimeError):
    """Raised with a short, actionable message; entry points print it without a traceback."""
