"""The built ranking index, kept on disk so that a cold start does not rebuild it.

Building the index (match.Matcher) stems and cuts every variant into pieces: about a third
of a second for the shipped call, most of a cold `clusterbot ask`. The index is a pure
function of the knowledge folder's files and of this package's code, so it is kept in a
file named after a digest of both: any edit to a YAML file, a threshold or the code gives
another name, and the stale file is removed when the new one is written. It is derived data,
never state: deleting the folder only costs one rebuild.

The file is a pickle, read only from a private folder of the user's own (0700; by default
$XDG_CACHE_HOME/clusterbot, else ~/.cache/clusterbot: it holds no personal data, so it
stays out of data_dir), written atomically (a temporary file, then a rename) with mode 0600,
and only trusted when no other user could have written it. Anything wrong with it
(unreadable, truncated, written by another version of a library) means a rebuild, never an
error.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

PREFIX = "matcher-"
SUFFIX = ".pickle"
# The libraries whose data ends up inside the index (stop-words lists, arrays, stemmers).
LIBRARIES = ("numpy", "PyStemmer", "stop-words", "rapidfuzz")
DIR_MODE = 0o700
FILE_MODE = 0o600

log = logging.getLogger(__name__)


def default_folder() -> Path | None:
    """$XDG_CACHE_HOME/clusterbot, else ~/.cache/clusterbot; None without a home folder."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(base):
        return Path(base) / "clusterbot"
    try:
        return Path.home() / ".cache" / "clusterbot"
    except RuntimeError:
        return None


def digest(files: Iterable[Path], extra: str = "") -> str:
    """A digest of the files' bytes, `extra`, this package's code and the libraries'
    versions: the name of one index."""
    hasher = hashlib.sha256()
    code = sorted(Path(__file__).parent.glob("*.py"))
    for path in [*files, *code]:
        hasher.update(path.name.encode())
        hasher.update(path.read_bytes() if path.exists() else b"\0absent")
    hasher.update(extra.encode())
    hasher.update(sys.version.encode())
    for name in LIBRARIES:
        try:
            hasher.update(f"{name}={metadata.version(name)}".encode())
        except metadata.PackageNotFoundError:
            hasher.update(f"{name}=absent".encode())
    return hasher.hexdigest()[:32]


def slot(directory: Path) -> str:
    """A short name for a knowledge folder, so that bots of two calls keep one index each."""
    return hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:12]


def load_or_build(folder: Path, key: str, kind: type[T], build: Callable[[], T]) -> T:
    """The `kind` object kept under `key` ("<slot>-<digest>") in `folder`, else `build()`'s
    result, then kept there in place of the slot's older one."""
    path = folder / f"{PREFIX}{key}{SUFFIX}"
    found = _read(path)
    if isinstance(found, kind):
        return found
    built = build()
    _write(folder, path, built, f"{PREFIX}{key.split('-')[0]}-*{SUFFIX}")
    return built


def _trusted(path: Path) -> bool:
    """Whether `path` is a regular file of ours that no other user can write."""
    try:
        info = path.lstat()
        folder = path.parent.lstat()
    except OSError:
        return False
    ours = info.st_uid == os.geteuid() and folder.st_uid == os.geteuid()
    loose = (info.st_mode | folder.st_mode) & (stat.S_IWGRP | stat.S_IWOTH)
    return stat.S_ISREG(info.st_mode) and ours and not loose


def _read(path: Path) -> object | None:
    if not _trusted(path):
        return None
    try:
        with path.open("rb") as handle:
            kept: object = pickle.load(handle)
            return kept
    # A file cut short or written by another version of a class: rebuild.
    except Exception as error:
        log.info("index cache %s unreadable (%s): rebuilding it", path.name, type(error).__name__)
        return None


def _write(folder: Path, path: Path, value: object, older: str) -> None:
    temporary: str | None = None
    try:
        _make_private_folder(folder)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".", suffix=SUFFIX)
        with os.fdopen(handle, "wb") as out:
            pickle.dump(value, out, protocol=pickle.HIGHEST_PROTOCOL)
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
        temporary = None
    except (OSError, pickle.PicklingError) as error:
        # A read-only or full disk costs the next start a rebuild, nothing else.
        log.warning("index cache not written in %s: %s", folder, error)
        return
    finally:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
    for stale in folder.glob(older):
        if stale != path:
            stale.unlink(missing_ok=True)


def _make_private_folder(folder: Path) -> None:
    """Create `folder` and any missing parent with mode 0700 (mkdir's `parents` would give
    the parents the default mode)."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    for path in reversed(missing):
        path.mkdir(mode=DIR_MODE, exist_ok=True)
