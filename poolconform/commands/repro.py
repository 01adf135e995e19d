"""`poolconform repro CASE --backend B`: a standalone script for an upstream bug report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from poolconform.commands.options import case_from_id
from poolconform.errors import PoolconformError
from poolconform.repro import REPRO_BACKENDS, repro_script
from poolconform.results import write_atomic


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("repro", help="write a standalone script that reproduces one case on one framework",
                       description="The script needs only numpy and the framework; it embeds the input and "
                                   "the ONNX spec's expected outputs, runs the case the framework's own way and "
                                   "prints expected, actual and where they differ (exit 1 if they do).")
    p.add_argument("case", metavar="CASE",
                   help="a case id, in a matrix or not (the id describes the whole case), e.g. MaxPool-2d-k3-s2-p1-ceil-f32-n7-b2c3")
    p.add_argument("--backend", required=True, choices=REPRO_BACKENDS, metavar="B",
                   help=f"one of {', '.join(REPRO_BACKENDS)}")
    p.add_argument("--matrix", type=Path, metavar="FILE.toml",
                   help="matrix whose ids to suggest when CASE is not a valid id (default: embedded)")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write the script here (default: stdout)")
    p.set_defaults(handler=main)


def _check_output(path: Path) -> None:
    """Refuse, before any work, a -o that cannot become a file (a folder, or under a file)."""
    if path.is_dir():
        raise PoolconformError(f"-o {str(path)!r} is a folder; give a file name")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise PoolconformError(f"-o {str(path)!r}: {str(parent)!r} is a file, not a folder")
            break


def main(args: argparse.Namespace) -> int:
    if args.output is not None:
        _check_output(args.output)
    case = case_from_id(args.case, args.matrix)
    script = repro_script(case, args.backend)
    if args.output is None:
        sys.stdout.write(script)
        return 0
    try:
        write_atomic(args.output, script)
        args.output.chmod(0o755)
    except OSError as exc:
        raise PoolconformError(f"cannot write {str(args.output)!r}: {exc.strerror or exc}") from None
    print(f"wrote {args.output}: python {args.output}", file=sys.stderr)
    return 0
