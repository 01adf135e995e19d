"""Read a user's TOML file (matrix, expectations) with every failure as one clear line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from poolconform.errors import PoolconformError


def read_toml(path: Path, what: str, error: type[PoolconformError]) -> dict[str, Any]:
    """The parsed file; `what` names it in messages ("matrix file"), `error` is raised."""
    where = str(path)
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{what} {where!r} does not exist") from None
    except IsADirectoryError:
        raise error(f"{what} {where!r} is a directory") from None
    except UnicodeDecodeError:
        raise error(f"{what} {where!r} is not text (UTF-8)") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what} {where!r} is not valid TOML: {exc}") from None
    except (OSError, ValueError) as exc:  # unreadable, a NUL in the name, ...
        raise error(f"{what} {where!r} cannot be read: {exc}") from None


def loads(text: str) -> dict[str, Any]:
    return tomllib.loads(text)
