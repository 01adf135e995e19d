"""A command's --json output file: refused before any work when it cannot be written, then
written whole (atomically) at the end, a failure being one line (never the results lost to a
traceback after minutes of timing)."""

from __future__ import annotations

import os
from pathlib import Path

from poolconform.errors import PoolconformError
from poolconform.results import write_atomic


def check_output_file(path: Path, option: str) -> None:
    """Refuse, before any work, an output file that cannot be written: a folder, a path whose
    parent is missing or not a folder (the result would be lost at the end), or a link, device
    or pipe (the whole-file write replaces the path itself: never /dev/null or a user's link)."""
    parent = path.parent
    if path.is_dir():
        raise PoolconformError(f"{option} {str(path)!r} is a folder; give a file path")
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise PoolconformError(f"{option} {str(path)!r} is a symlink, device or pipe; {option} writes a whole "
                               "file in its place: give a plain file path")
    if not parent.is_dir():
        raise PoolconformError(f"{option} {str(path)!r}: the folder {str(parent)!r} does not exist or is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PoolconformError(f"{option} {str(path)!r}: the folder {str(parent)!r} is not writable")


def write_output_file(path: Path, text: str, option: str) -> None:
    """Write an output file atomically; an OS error is one line naming the path."""
    try:
        write_atomic(path, text)
    except OSError as exc:
        raise PoolconformError(f"cannot write {option} {str(path)!r}: {exc.strerror or exc}") from None
