"""Downloading with checksums and safe archive extraction, for users who are online."""

from __future__ import annotations

import hashlib
import http.client
import shutil
import tarfile
import urllib.request
from pathlib import Path

from dlexp.errors import DataError


def file_digest(path: Path, algorithm: str = "md5") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(urls: list[str], dest: Path, checksum: str | None, algorithm: str = "md5") -> Path:
    """Fetch the first URL that works into ``dest`` (atomically) and verify its checksum."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    errors = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=30) as r, open(tmp, "wb") as f:
                shutil.copyfileobj(r, f)
        except (OSError, ValueError, http.client.HTTPException) as e:  # e.g. IncompleteRead
            errors.append(f"{url}: {e}")
            continue
        if checksum and (got := file_digest(tmp, algorithm)) != checksum:
            tmp.unlink(missing_ok=True)
            errors.append(f"{url}: {algorithm} mismatch (got {got}, expected {checksum})")
            continue
        tmp.replace(dest)
        return dest
    tmp.unlink(missing_ok=True)
    raise DataError(f"could not download {dest.name}:\n  " + "\n  ".join(errors))


def safe_extract(archive: Path, target: Path) -> None:
    """Extract a tarball with tarfile's ``data`` filter: members escaping ``target``, absolute
    paths, device files and dangerous links are refused instead of written."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
    except tarfile.FilterError as e:
        raise DataError(f"refusing unsafe archive {archive}: {e}") from e
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{archive} is not a readable tar archive ({e}); delete it and retry") from e
