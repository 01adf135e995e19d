"""`poolconform repro CASE --backend B`: a standalone script for an upstream bug report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from poolconform.commands.explain import find_case
from poolconform.matrix import load_matrix
from poolconform.repro import REPRO_BACKENDS, repro_script
from poolconform.results import write_atomic


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("repro", help="write a standalone script that reproduces one case on one framework",
                       description="The script needs only numpy and the framework; it embeds the input and "
                                   "the ONNX spec's expected outputs, runs the case the framework's own way and "
                                   "prints expected, actual and where they differ (exit 1 if they do).")
    p.add_argument("case", metavar="CASE", help="a case id, e.g. MaxPool-2d-k3-s2-p1-ceil-f32-n7-b2c3")
    p.add_argument("--backend", required=True, choices=REPRO_BACKENDS, metavar="B",
                   help=f"one of {', '.join(REPRO_BACKENDS)}")
    p.add_argument("--matrix", type=Path, metavar="FILE.toml", help="find CASE in this matrix (default: embedded)")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write the script here (default: stdout)")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    case = find_case(args.case, load_matrix(args.matrix).cases)
    script = repro_script(case, args.backend)
    if args.output is None:
        sys.stdout.write(script)
        return 0
    write_atomic(args.output, script)
    args.output.chmod(0o755)
    print(f"wrote {args.output}: python {args.output}", file=sys.stderr)
    return 0
