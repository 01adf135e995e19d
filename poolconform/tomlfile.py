"""Read a user's TOML file (matrix, expectations) with every failure as one clear line.

Python's TOML parser recurses once per nesting level, so `[[[[...]]]]` 5000 deep raises
RecursionError rather than TOMLDecodeError; that, and any other failure of the parser,
is the user's input being unusable, never a traceback.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

from poolconform.errors import PoolconformError


def shown_path(path: str | os.PathLike[str]) -> str:
    """A path as printable text: bytes that are not UTF-8 (0xff) become `\\xff`.

    File names are bytes; Python keeps undecodable ones as lone surrogates, which no
    UTF-8 report can hold. Record this form wherever a path is written into a report.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


#: The largest TOML file read (bytes): the largest shipped matrix is about 2 KB; a larger
#: file is a wrong path (a log, a dataset), and reading it whole would only cost memory.
MAX_BYTES = 1 << 20


def read_toml(path: Path, what: str, error: type[PoolconformError]) -> dict[str, Any]:
    """The parsed file; `what` names it in messages ("matrix file"), `error` is raised.

    Only a regular file is read, and at most MAX_BYTES of it: /dev/zero would fill the
    memory and a FIFO would block forever (it is opened without blocking, then refused)."""
    where = shown_path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise error(f"{what} {where!r} is not a regular file (a device, FIFO or socket)")
            data = f.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise error(f"{what} {where!r} is larger than {MAX_BYTES >> 20} MiB: not a {what}")
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise error(f"{what} {where!r} does not exist") from None
    except IsADirectoryError:
        raise error(f"{what} {where!r} is a directory") from None
    except UnicodeDecodeError:
        raise error(f"{what} {where!r} is not text (UTF-8)") from None
    except (OSError, ValueError) as exc:  # unreadable, a NUL in the name, ...
        raise error(f"{what} {where!r} cannot be read: {exc}") from None
    try:
        return parse(text)
    except PoolconformError as exc:
        raise error(f"{what} {where!r} {exc}") from None


def parse(text: str) -> dict[str, Any]:
    """Parse TOML text; any parser failure is a PoolconformError whose message completes "FILE ..."."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PoolconformError(f"is not valid TOML: {exc}") from None
    except RecursionError:
        raise PoolconformError("is nested too deeply to parse (an array or table nested hundreds of levels)") from None
    except Exception as exc:  # noqa: BLE001 - the parser's own failure is still the input's fault
        raise PoolconformError(f"cannot be parsed as TOML: {type(exc).__name__}: {exc}") from None


def loads(text: str) -> dict[str, Any]:
    return tomllib.loads(text)
