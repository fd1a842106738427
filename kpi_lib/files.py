"""Atomic writes, private folders and locks, for everything that writes.

- :func:`write_atomic` writes a file whole or not at all: a temporary file in the same
  folder, flushed to disk, then one ``os.replace``.
- :func:`open_private_dir` and :func:`read_private` read only what this user wrote in a
  folder nobody else can write, without following a symbolic link at any step.
- :func:`hold_lock` is an exclusive ``flock`` on a lock file that is removed when the lock
  is released, so no lock file stays behind; a process that has to wait says so once.
- A full disk becomes one :class:`~kpi_lib.errors.DiskFullError` naming the path
  (:func:`disk_full`, :func:`raise_if_disk_full`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import tempfile
import time
from pathlib import Path
from typing import Iterator

from .errors import DiskFullError, LockBusyError
from .log import logger

_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full(exc: BaseException | None) -> OSError | None:
    """The "no space left" error behind ``exc`` (its causes and contexts included), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _FULL:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def raise_if_disk_full(exc: BaseException | None, where: str | os.PathLike) -> None:
    """Raise a :class:`DiskFullError` when ``exc`` comes from a full disk (``where`` if it names no file)."""
    full = disk_full(exc)
    if full is not None:
        raise DiskFullError(full.filename or where) from exc


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename in it) to disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, content: str | bytes, mode: int = 0o644) -> Path:
    """Write ``content`` to ``path`` through a flushed temporary file and ``os.replace``.

    A reader sees the old file or the new one, never part of either; a full disk raises
    :class:`DiskFullError` and leaves the old file as it was.
    """
    path = Path(path)
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise_if_disk_full(exc, path)
        raise
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise_if_disk_full(exc, path)
        raise
    return path


def make_private_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A new folder under ``parent`` with mode 0700, owned by this user."""
    try:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    except OSError as exc:
        raise_if_disk_full(exc, parent)
        raise


def open_private_dir(folder: str | os.PathLike) -> int | None:
    """A descriptor of ``folder`` when it is a real folder of this user that nobody else can
    enter or write (mode 0700 or stricter); None otherwise. The caller closes it."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    info = os.fstat(fd)
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        os.close(fd)
        return None
    return fd


def read_private(dir_fd: int, name: str) -> bytes | None:
    """The bytes of ``name`` in the folder ``dir_fd`` when it is a regular file of this user
    that nobody else can change; None when it is missing, a link or anything else."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
            return None
        return fh.read()


def exists_in(dir_fd: int, name: str) -> bool:
    """True when ``name`` exists in the folder ``dir_fd`` (a link counts, and is not followed)."""
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
        return f"pid {info.get('pid')}, {info.get('what')} since {info.get('since')}"
    except (OSError, ValueError):
        return "another process"


@contextlib.contextmanager
def hold_lock(path: str | os.PathLike, what: str, timeout: float | None = None,
              poll: float = 0.1) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created, then removed on release).

    Parameters
    ----------
    path : path
        The lock file (its folder is made when missing).
    what : str
        What the holder does ("run of 2026-W47"), written into the file for whoever waits.
    timeout : float, optional
        Seconds to wait (None: as long as it takes; 0: try once). Past it, raise
        :class:`~kpi_lib.errors.LockBusyError` (exit code 75).
    """
    path = Path(path)
    started, told = time.monotonic(), False
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise_if_disk_full(exc, path)
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            waited = time.monotonic() - started
            if timeout is not None and waited >= timeout:
                raise LockBusyError(f"{path} is held ({_holder(path)}): another {what} is under way; "
                                    "wait for it to finish, then retry") from None
            if not told:
                logger.warning("waiting for %s: another %s holds it (%s)", path, what, _holder(path))
                told = True
            time.sleep(poll)
            continue
        try:  # the holder before us may have removed the file it locked: lock the one at path
            current = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            current = None
        mine = os.fstat(fd)
        if current is None or (current.st_dev, current.st_ino) != (mine.st_dev, mine.st_ino):
            os.close(fd)
            continue
        break
    if told:
        logger.warning("%s is free after %.1f s: going on", path, time.monotonic() - started)
    try:
        note = json.dumps({"pid": os.getpid(), "what": what,
                           "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode()
        os.ftruncate(fd, 0)
        os.write(fd, note)
    except OSError:
        pass  # the note is for people; the lock holds without it
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # still locked: a waiter that opened it retries on the new file
        os.close(fd)
