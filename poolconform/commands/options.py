"""Options and parsing shared by several subcommands."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from poolconform.backends.base import BackendSpec, resolve_backend_names
from poolconform.errors import PoolconformError

if TYPE_CHECKING:
    from poolconform.expectations import Expectation


def names(value: str | None) -> list[str]:
    """A comma-separated option as a list of names (empty entries ignored)."""
    return [n.strip() for n in (value or "").split(",") if n.strip()]


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backends", metavar="A,B", help="backends to run (default: every available one)")
    parser.add_argument("--require", metavar="A,B", default="",
                        help="exit 2 unless these backends are available (a CI gate must not pass because CUDA vanished)")
    parser.add_argument("--timeout", type=positive_float, default=60.0, metavar="SECONDS",
                        help="per-case limit; a case over it is a timeout record and its worker restarts (default 60)")
    parser.add_argument("--jobs", type=positive_int, default=os.cpu_count() or 1, metavar="N",
                        help="backends computing at the same time (default: CPU count)")
    parser.add_argument("--expectations", type=Path, metavar="FILE", help="TOML file of known disagreements")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")


def expectations_of(args: argparse.Namespace) -> list[Expectation] | None:
    """The --expectations entries, read and checked now: a malformed file must stop the
    command before any case runs, not after the whole matrix has run."""
    if getattr(args, "expectations", None) is None:
        return None
    from poolconform.expectations import load_expectations

    return load_expectations(args.expectations)


def selected_specs(args: argparse.Namespace) -> tuple[list[BackendSpec], list[str]]:
    """Backends from --backends plus every --require name; unknown names are errors."""
    required = names(args.require)
    chosen = names(args.backends)
    if chosen:
        chosen += [n for n in required if n not in chosen]
    specs = resolve_backend_names(chosen or None)
    if required and not chosen:
        resolve_backend_names(required)  # unknown required names are usage errors too
        have = {s.name for s in specs}
        specs += [s for s in resolve_backend_names(required) if s.name not in have]
    return specs, required


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def existing_path(text: str) -> Path:
    path = Path(text)
    if not path.exists():
        raise PoolconformError(f"{text!r} does not exist")
    return path
