"""The on-disk cache of encoded corpora: token ids saved once, keyed by everything they depend
on (tokenizer settings, data fingerprint), so later runs skip tokenizing."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def cache_key(**parts: object) -> str:
    """A short stable hash of the settings and data fingerprint an encoding depends on."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def save_cache(path: Path, payload: dict) -> None:
    """Write atomically: a concurrent reader (another DDP rank) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_cache(path: Path, layout: dict | None = None) -> dict | None:
    """The cached payload, or None when absent, unreadable or stale (then it is rebuilt).
    ``layout`` is what the payload must hold: keys, each with a nested layout or None."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, weights_only=True)
    except Exception as e:  # a truncated or foreign file: rebuilding is the fix
        log.warning("ignoring unreadable cache %s (%s); rebuilding it", path, e)
        return None
    if not _holds(payload, layout or {}):
        log.warning("ignoring stale cache %s (not the layout this dlexp writes); rebuilding it",
                    path)
        return None
    return payload


def _holds(payload: object, layout: dict) -> bool:
    return isinstance(payload, dict) and all(
        key in payload and (inner is None or _holds(payload[key], inner))
        for key, inner in layout.items())
