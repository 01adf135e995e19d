"""Options and parsing shared by several subcommands."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from poolconform.backends.base import BackendSpec, resolve_backend_names
from poolconform.errors import CaseError, PoolconformError

if TYPE_CHECKING:
    from poolconform.case import PoolCase
    from poolconform.case_list import CaseList
    from poolconform.expectations import Expectation

#: Characters that make a --cases pattern a glob rather than one id.
GLOB_CHARS = frozenset("*?[")


def names(value: str | None) -> list[str]:
    """A comma-separated option as a list of names (empty entries ignored)."""
    return [n.strip() for n in (value or "").split(",") if n.strip()]


def name_list(value: str) -> str:
    """argparse type of a comma-separated list that must name something: `--backends ,` (or
    an empty string from an unset shell variable) would otherwise mean every backend."""
    if not names(value):
        raise argparse.ArgumentTypeError(f"names nothing ({value!r}); leave the option out to mean all")
    return value


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backends", type=name_list, metavar="A,B", help="backends to run (default: every available one)")
    parser.add_argument("--require", metavar="A,B", default="",
                        help="exit 2 unless these backends are available (a CI gate must not pass because CUDA vanished)")
    parser.add_argument("--timeout", type=positive_float, default=60.0, metavar="SECONDS",
                        help="per-case limit; a case over it is a timeout record and its worker restarts (default 60)")
    parser.add_argument("--jobs", type=positive_int, default=os.cpu_count() or 1, metavar="N",
                        help="backends computing at the same time (default: CPU count)")
    parser.add_argument("--expectations", type=Path, metavar="FILE", help="TOML file of known disagreements")
    parser.add_argument("--quiet", action="store_true", help="print only the verdict line (and errors)")
    add_backend_python_option(parser)


def add_backend_python_option(parser: argparse.ArgumentParser) -> None:
    """--backend-python NAME=PATH (README "Backends in their own environments")."""
    from poolconform.envs import parse_backend_python

    parser.add_argument("--backend-python", action="append", type=parse_backend_python, metavar="NAME=PATH",
                        help="run backend NAME's worker under this interpreter (repeatable); NAME@TAG runs NAME "
                             "a second time, e.g. onnxruntime-cpu@1.23=ENV/bin/python beside onnxruntime-cpu")


def expectations_of(args: argparse.Namespace) -> list[Expectation] | None:
    """The --expectations entries, read and checked now: a malformed file must stop the
    command before any case runs, not after the whole matrix has run."""
    if getattr(args, "expectations", None) is None:
        return None
    from poolconform.expectations import load_expectations

    return load_expectations(args.expectations)


def selected_specs(args: argparse.Namespace) -> tuple[list[BackendSpec], list[str]]:
    """Backends from --backends plus every --require name; unknown names are errors."""
    from poolconform.backends.base import registry
    from poolconform.envs import backend_pythons

    required = names(getattr(args, "require", ""))
    chosen = names(args.backends)
    if chosen:
        chosen += [n for n in required if n not in chosen]
    pythons = backend_pythons(getattr(args, "backend_python", None), [*chosen, *required, *([] if chosen else registry())])
    specs = resolve_backend_names(chosen or None, pythons)
    if required and not chosen:
        resolve_backend_names(required, pythons)  # unknown required names are usage errors too
        have = {s.name for s in specs}
        specs += [s for s in resolve_backend_names(required, pythons) if s.name not in have]
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


def case_from_id(case_id: str, matrix: Path | None = None) -> PoolCase:
    """The case an id describes, whether or not a matrix holds it (every valid id is a whole case).

    When the id is not valid, the error says which token is wrong and suggests the closest
    ids of the matrix (`matrix`, or the embedded default)."""
    import difflib

    from poolconform.case_ids import parse_case_id
    from poolconform.matrix import load_matrix

    try:
        return parse_case_id(case_id)
    except CaseError as exc:
        ids = [c.id for c in load_matrix(matrix).cases]
        close = difflib.get_close_matches(case_id, ids, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise PoolconformError(f"{exc}{hint}") from None


def select_cases(cases: Sequence[PoolCase], patterns: list[str]) -> CaseList:
    """The cases whose id matches one of the --cases patterns (globs over the whole id, as
    `fnmatch` reads them), in matrix order; an exact id that no matrix case has is parsed and
    added. A pattern that selects nothing is an error: an empty selection must not pass a gate.
    One pass over the matrix: its cases are made when read (poolconform/case_list.py)."""
    from fnmatch import fnmatchcase

    from poolconform.case import PoolCase
    from poolconform.case_ids import parse_case_id
    from poolconform.case_list import CaseList

    globs = [p for p in patterns if GLOB_CHARS & set(p)]
    named: dict[str, PoolCase | CaseError] = {}
    for pattern in patterns:
        if pattern not in globs:
            try:
                named[pattern] = parse_case_id(pattern)
            except CaseError as exc:
                named[pattern] = exc
    wanted = {c.id for c in named.values() if isinstance(c, PoolCase)}
    in_matrix: set[str] = set()
    matched: set[str] = set()

    def chosen(case: PoolCase) -> bool:
        hit = case.id in wanted
        if hit:
            in_matrix.add(case.id)
        for pattern in globs:
            if fnmatchcase(case.id, pattern):
                matched.add(pattern)
                hit = True
        return hit

    listed = cases if isinstance(cases, CaseList) else CaseList.of(cases)
    selected = listed.where(chosen)
    for pattern in patterns:
        if isinstance(named.get(pattern), CaseError):
            raise PoolconformError(f"--cases {pattern!r} is neither a case of the matrix nor a valid id "
                                   f"({named[pattern]}); use * or ? for a glob") from None
        if pattern in globs and pattern not in matched:
            raise PoolconformError(f"--cases {pattern!r} matches none of the matrix's {len(cases)} cases")
    added = {c.id: c for c in named.values() if isinstance(c, PoolCase) and c.id not in in_matrix}
    return selected.then(added.values()) if added else selected
