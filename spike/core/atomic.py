"""Atomic file output: write under a temporary name beside the target, rename when complete.

A failure (an exception, Ctrl-C) removes the temporary file, so a reader never sees a half-written
file and the target keeps its old content.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Callable, Iterator

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path: str | Path, error: Callable[[str], Exception] = ValueError) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; ``os.replace`` it onto ``path`` if the block succeeds.

    Args:
        path: the final file.
        error: builds the exception raised when the folder cannot be written (given the message,
            which starts with ``path``).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # honours the umask
    except OSError as e:
        raise error(f"{path}: cannot write here: {e.strerror or e}") from None
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
