"""download() over file:// URLs (offline) and safe_extract on hand-built tarballs."""

from __future__ import annotations

import hashlib
import http.client
import io
import tarfile
from pathlib import Path

import pytest

from dlexp.data import download as dl
from dlexp.data.download import download, file_digest, safe_extract
from dlexp.errors import DataError

PAYLOAD = b"some MNIST-ish bytes\n" * 5000


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "mirror" / "file.gz"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    return src


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("algorithm", ["md5", "sha256"])
def test_file_digest(tmp_path: Path, algorithm: str) -> None:
    path = tmp_path / "f"
    data = bytes(range(256)) * 9000  # > the 1 MiB read chunk
    path.write_bytes(data)
    assert file_digest(path, algorithm) == hashlib.new(algorithm, data).hexdigest()


def test_download_with_matching_checksum(tmp_path: Path, source: Path) -> None:
    dest = tmp_path / "out" / "nested" / "file.gz"
    got = download([source.as_uri()], dest, hashlib.md5(PAYLOAD).hexdigest())
    assert got == dest and dest.read_bytes() == PAYLOAD
    assert _leftovers(dest.parent) == ["file.gz"]  # no .part left


def test_download_other_algorithm(tmp_path: Path, source: Path) -> None:
    dest = tmp_path / "out" / "file.gz"
    download([source.as_uri()], dest, hashlib.sha256(PAYLOAD).hexdigest(), "sha256")
    assert dest.read_bytes() == PAYLOAD


def test_download_without_checksum(tmp_path: Path, source: Path) -> None:
    dest = tmp_path / "out" / "file.gz"
    download([source.as_uri()], dest, None)
    assert dest.read_bytes() == PAYLOAD


def test_checksum_mismatch_leaves_nothing(tmp_path: Path, source: Path) -> None:
    dest = tmp_path / "out" / "file.gz"
    with pytest.raises(DataError, match="md5 mismatch") as err:
        download([source.as_uri()], dest, "0" * 32)
    msg = str(err.value)
    assert "file.gz" in msg and hashlib.md5(PAYLOAD).hexdigest() in msg and "0" * 32 in msg
    assert not dest.exists()
    assert _leftovers(dest.parent) == []


def test_mismatch_keeps_an_existing_file(tmp_path: Path, source: Path) -> None:
    dest = tmp_path / "file.gz"
    dest.write_bytes(b"old")
    with pytest.raises(DataError):
        download([source.as_uri()], dest, "0" * 32)
    assert dest.read_bytes() == b"old"  # replaced atomically or not at all


def test_falls_back_to_the_next_mirror(tmp_path: Path, source: Path) -> None:
    dest = tmp_path / "out" / "file.gz"
    missing = (tmp_path / "mirror" / "absent.gz").as_uri()
    download([missing, source.as_uri()], dest, hashlib.md5(PAYLOAD).hexdigest())
    assert dest.read_bytes() == PAYLOAD


def test_every_mirror_failing_lists_each(tmp_path: Path, source: Path) -> None:
    dest = tmp_path / "out" / "file.gz"
    missing = (tmp_path / "absent.gz").as_uri()
    with pytest.raises(DataError, match="could not download file.gz") as err:
        download([missing, source.as_uri()], dest, "f" * 32)
    msg = str(err.value)
    assert missing in msg and source.as_uri() in msg and "mismatch" in msg
    assert _leftovers(dest.parent) == []


def test_no_urls(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="could not download"):
        download([], tmp_path / "x.gz", None)


def test_network_errors_become_data_errors(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, timeout: float) -> None:
        raise OSError("Network is unreachable")

    monkeypatch.setattr(dl.urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="Network is unreachable"):
        download(["https://example.invalid/f.gz"], tmp_path / "f.gz", None)
    assert _leftovers(tmp_path) == []


def test_broken_transfer_leaves_no_part_file(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken(io.BytesIO):
        def read(self, *args: object) -> bytes:
            raise http.client.IncompleteRead(b"partial")

    monkeypatch.setattr(dl.urllib.request, "urlopen", lambda url, timeout: Broken())
    with pytest.raises(DataError, match="could not download"):
        download(["https://example.invalid/f.gz"], tmp_path / "f.gz", None)
    assert _leftovers(tmp_path) == []


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_safe_extract_normal_archive(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "ok.tar.gz", {"aclImdb/train/pos/1.txt": b"great",
                                            "aclImdb/README": b"hi"})
    target = tmp_path / "target"
    safe_extract(archive, target)
    assert (target / "aclImdb" / "train" / "pos" / "1.txt").read_bytes() == b"great"
    assert (target / "aclImdb" / "README").read_bytes() == b"hi"


@pytest.mark.parametrize("name", ["../escape.txt", "a/../../escape.txt"])
def test_safe_extract_refuses_path_traversal(tmp_path: Path, name: str) -> None:
    archive = _tar(tmp_path / "evil.tar.gz", {name: b"pwned"})
    target = tmp_path / "target"
    with pytest.raises(DataError, match="refusing unsafe archive") as err:
        safe_extract(archive, target)
    assert str(archive) in str(err.value)
    assert not (tmp_path / "escape.txt").exists()


def test_safe_extract_refuses_absolute_paths(tmp_path: Path) -> None:
    outside = tmp_path / "abs_escape.txt"
    archive = _tar(tmp_path / "evil.tar.gz", {str(outside): b"pwned"})
    target = tmp_path / "target"
    safe_extract(archive, target)  # the data filter strips the leading slash
    assert not outside.exists()
    assert (target / str(outside).lstrip("/")).read_bytes() == b"pwned"


def test_safe_extract_refuses_escaping_symlink(tmp_path: Path) -> None:
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("link")
        info.type, info.linkname = tarfile.SYMTYPE, "../../etc/passwd"
        tar.addfile(info)
    with pytest.raises(DataError, match="refusing unsafe archive"):
        safe_extract(archive, tmp_path / "target")


def test_safe_extract_not_a_tarball(tmp_path: Path) -> None:
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(b"this is not a tar archive at all" * 10)
    with pytest.raises(DataError, match="not a readable tar archive") as err:
        safe_extract(archive, tmp_path / "target")
    assert str(archive) in str(err.value)
