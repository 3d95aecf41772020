"""Checksums of the files nurec writes, and file names confined to their directory.

A manifest (``dataset.json``, ``predictions.json``) records every file it lists with its
SHA-256 and byte size when the file is written; readers compare both before they use
the file. Parquet checks none of this itself: data pages carry no checksum by default
(pyarrow writes none) and zstd frames are written without one, so overwritten bytes can
decode to different values without any error.

Cost: SHA-256 runs at roughly 1 GB/s, a few times faster than Parquet decoding, so each
file is hashed once per open, streaming (``hashlib.file_digest``), before it is parsed.
The size is compared first, so a truncated file is reported without reading it.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")


class ChecksumWarning(UserWarning):
    """Files are read without verification because their manifest records no checksums."""


@dataclass(frozen=True)
class FileDigest:
    """The SHA-256 (lower-case hex) and byte size of one file, as a manifest records them."""

    sha256: str
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "bytes": self.size_bytes}

    @classmethod
    def of_bytes(cls, data: bytes | memoryview) -> FileDigest:
        """Return the digest of ``data`` (anything with the buffer protocol, e.g. a pyarrow Buffer)."""
        view = memoryview(data)
        return cls(hashlib.sha256(view).hexdigest(), view.nbytes)


def file_digest(path: str | os.PathLike) -> FileDigest:
    """Return the digest of the file at ``path``, read once in blocks (memory stays small)."""
    with open(path, "rb") as handle:
        sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
        return FileDigest(sha256, handle.tell())


def file_problem(path: str | os.PathLike, expected: FileDigest) -> str | None:
    """Return what is wrong with the file at ``path`` compared with ``expected``; None if it matches.

    The answer is a short phrase to follow "FILE is" ("missing", "truncated: ...",
    "corrupted: ..."), for the caller's one-line error naming the file and its dataset.
    """
    try:
        size_bytes = Path(path).stat().st_size
    except FileNotFoundError:
        return "missing"
    except OSError as err:
        return f"unreadable ({err.strerror or err})"
    if size_bytes != expected.size_bytes:
        kind = "truncated" if size_bytes < expected.size_bytes else "of the wrong size"
        return f"{kind}: {size_bytes} bytes, the manifest records {expected.size_bytes}"
    try:
        actual = file_digest(path)
    except OSError as err:
        return f"unreadable ({err.strerror or err})"
    if actual.sha256 != expected.sha256:
        return f"corrupted: sha256 {actual.sha256[:16]}... differs from the recorded {expected.sha256[:16]}..."
    return None


def confined_path(directory: str | os.PathLike, name: str) -> Path:
    """Return ``directory/name`` after checking that it stays inside ``directory``.

    Refuses (ValueError, a short phrase) absolute names, any ``..`` component, and names
    that resolve outside the directory through a symbolic link. A missing file is not an
    error here: its name is still checked.
    """
    if not name or "\x00" in name:
        raise ValueError("must be a non-empty file name")
    for flavour in (PurePosixPath(name), PureWindowsPath(name)):
        if flavour.is_absolute() or flavour.anchor:
            raise ValueError(f"'{name}' is an absolute path; files must be named relative to the directory")
        if ".." in flavour.parts:
            raise ValueError(f"'{name}' contains '..'; files must stay inside the directory")
    try:
        root = Path(directory).resolve()
        resolved = (root / name).resolve()
    except (OSError, RuntimeError) as err:  # a symbolic link loop (RuntimeError before Python 3.13)
        raise ValueError(f"'{name}' cannot be resolved ({err})") from err
    if not resolved.is_relative_to(root):
        raise ValueError(f"'{name}' resolves to {resolved}, outside the directory (a symbolic link?)")
    return Path(directory) / name


_WARNED: set[str] = set()


def warn_unverified_once(where: str | os.PathLike, message: str) -> None:
    """Emit one ChecksumWarning per ``where`` (a dataset or prediction directory) per process."""
    key = str(Path(where).resolve())
    if key in _WARNED:
        return
    _WARNED.add(key)
    warnings.warn(message, ChecksumWarning, stacklevel=3)


__all__ = [
    "ChecksumWarning",
    "FileDigest",
    "confined_path",
    "file_digest",
    "file_problem",
    "warn_unverified_once",
]
