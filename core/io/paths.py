"""Output paths that must not touch the inputs, and the folder lock of a run.

:func:`check_outputs` is called by every command (and the engine functions that write files) before
any work: an output that resolves to an input (the same path after following symbolic links and
``..``, or another name of the same file through a hard link) would destroy the input, so it is
refused with a one-line :class:`SegdeepError`. :class:`FolderLock` keeps two runs from writing
into one output folder at once.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import SegdeepError

__all__ = ["LOCK_NAME", "FolderLock", "check_outputs", "same_file"]

#: Name of the lock file a run holds in its output folder.
LOCK_NAME = ".segdeep-lock"


def _local(path) -> bool:
    text = str(path)
    return bool(text) and "://" not in text and not text.startswith("/vsi")


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` name the same file: the same real path (symbolic links and ``..``
    resolved) or, when both exist, the same device and inode (hard links)."""
    if not (_local(a) and _local(b)):
        return str(a) == str(b)
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): only the real path can match
        return False


def check_outputs(inputs: Iterable[tuple[str, object]], outputs: Iterable[tuple[str, object]]) -> None:
    """Refuse (one-line :class:`SegdeepError`) any output that is an input under another name.

    ``inputs`` and ``outputs`` are ``(what, path)`` pairs, e.g. ``("image", "scene.tif")`` and
    ``("--out", "labels.tif")``; a ``None`` path is skipped. Checked before any work, so a refused
    command has written nothing.
    """
    ins = [(what, p) for what, p in inputs if p is not None and str(p)]
    for out_what, out in outputs:
        if out is None or not str(out):
            continue
        for in_what, src in ins:
            if same_file(out, src):
                raise SegdeepError(f"{out_what} {out}: is the {in_what} {src} (the same file); writing it "
                                   "would destroy the input, so choose another output path")


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(path.read_text().strip() or 0)
        if pid:
            return f"process {pid}"
    return "another process"


class FolderLock:
    """An exclusive lock on an output folder, held until :meth:`release` (or the process ends).

    ``FolderLock(folder)`` takes it at once: when another run (in this process or another, on this
    machine) holds it, a one-line :class:`SegdeepError` says ``"<folder> is in use by process N"``.
    The lock is an advisory ``flock`` on ``<folder>/.segdeep-lock``, so the operating system drops
    it when the process dies (kill -9 included) and a stale file never blocks a later run. The file
    holds the process id of the holder, for the message, and is removed on release. The folder is
    created when missing, and removed again on release if it is still empty.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        if self.folder.exists() and not self.folder.is_dir():
            raise SegdeepError(f"{self.folder}: exists and is not a folder; give a folder for the outputs")
        self._created = not self.folder.exists()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SegdeepError(f"{self.folder}: cannot create the output folder ({exc.strerror or exc})") from None
        self._fd: int | None = None
        for _ in range(10):  # the file may be removed by a holder releasing it between open and flock
            fd = self._try_lock()
            try:
                if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        else:  # pragma: no cover - ten releases in a row while we were locking
            raise SegdeepError(f"{self.folder} is in use by {_holder(self.path)}; wait for it to finish")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def _try_lock(self) -> int:
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise SegdeepError(f"{self.folder}: output folder is not writable ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise SegdeepError(f"{self.folder} is in use by {_holder(self.path)}; wait for it to finish "
                                   "or choose another output folder") from None
            raise SegdeepError(f"{self.folder}: cannot lock the output folder ({exc.strerror or exc})") from None
        return fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock and remove its file (idempotent). A run that opened the file just before
        the removal finds, once it holds the lock, that the name no longer points at it, and tries
        again on a new file (see ``__init__``)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                    self.path.unlink()
            os.close(fd)
            if self._created:  # a run refused before writing anything leaves no empty folder
                with contextlib.suppress(OSError):
                    self.folder.rmdir()

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.release()
