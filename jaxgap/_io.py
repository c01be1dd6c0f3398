"""Atomic file writes: a file is either absent, its old version, or complete.

Every writer stages its bytes under a hidden temporary name in the destination folder,
flushes them to disk and renames them into place (``os.replace`` is atomic on POSIX), so a
run killed at any moment leaves no partially written result.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from typing import IO

__all__ = ["temp_file", "write_bytes", "write_files", "write_text"]


@contextlib.contextmanager
def temp_file(folder: str | os.PathLike, name: str) -> Iterator[tuple[str, IO[bytes]]]:
    """A fresh hidden file next to ``folder/name``, removed on exit (unless renamed away).

    Yields:
      ``(path, binary file)`` of the temporary file.
    """
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # mode honours the umask
    try:
        with os.fdopen(fd, "wb") as f:
            yield tmp, f
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def write_files(folder: str | os.PathLike,
                writers: Mapping[str, Callable[[IO[bytes]], None]]) -> list[str]:
    """Produce every file under a temporary name, then rename them all into place.

    Nothing named in ``writers`` is replaced unless all of them were written successfully.

    Args:
      folder: an existing, writable folder.
      writers: ``{file name: write(binary file)}``; names are relative to ``folder`` and
        must not contain a path separator.

    Returns:
      The final paths, in the order of ``writers``.

    Raises:
      ValueError: a name holds a path separator or is empty.
      OSError: a file could not be written (nothing was renamed into place).
    """
    for name in writers:
        if not name or os.sep in name or (os.altsep and os.altsep in name):
            raise ValueError(f"writers: expected plain file names, got {name!r}")
    with contextlib.ExitStack() as stack:
        staged = []
        for name, write in writers.items():
            tmp, f = stack.enter_context(temp_file(folder, name))
            write(f)
            f.flush()
            os.fsync(f.fileno())
            f.close()  # complete on disk before anything is renamed
            staged.append((tmp, os.path.join(folder, name)))
        for tmp, final in staged:
            os.replace(tmp, final)
    return [final for _, final in staged]


def write_bytes(path: str | os.PathLike, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically; returns the path."""
    folder, name = os.path.split(os.fspath(path))
    return write_files(folder or ".", {name: lambda f: f.write(data)})[0]


def write_text(path: str | os.PathLike, text: str) -> str:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    return write_bytes(path, text.encode("utf-8"))
