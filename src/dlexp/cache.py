"""Where dlexp keeps what it computes once per user and machine (tokenized texts, decoded
images, the bf16 probe): ``$DLEXP_CACHE_DIR``, else ``~/.cache/dlexp``."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir() -> Path:
    env = os.environ.get("DLEXP_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dlexp"
