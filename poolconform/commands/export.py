"""`poolconform export --out DIR`: the matrix as ONNX backend-test directories (portable models)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from poolconform.matrix import load_matrix


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write the matrix as ONNX backend-test directories with expected outputs",
                       description="One directory per case (model.onnx, test_data_set_0/input_0.pb, output_0.pb) "
                                   "plus manifest.json. Deterministic: the same command twice writes identical bytes.")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="folder to write: one test_<case id>/ directory per case and manifest.json "
                        "(created if missing; `--out models` regenerates the committed corpus)")
    p.add_argument("--matrix", type=Path, metavar="FILE.toml",
                   help="matrix file (default: the portable corpus, i.e. the embedded matrix without its large "
                        "inputs, which is what models/ holds)")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    """Export, and on Ctrl-C say what is on disk: not the run commands' `--resume` advice."""
    from poolconform.testdirs import ExportInterrupted

    try:
        return _export(args)
    except ExportInterrupted as stop:
        print(f"poolconform export: interrupted; {stop.written} of {stop.total} case(s) written to "
              f"{str(args.out)!r} and listed in its manifest.json; a new export into the same --out replaces them",
              file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"poolconform export: interrupted; a new export into the same --out {str(args.out)!r} replaces "
              "what was written", file=sys.stderr)
        return 130


def _export(args: argparse.Namespace) -> int:
    from poolconform.adaptive import ADAPTIVE_OPS, ONNX_REFUSAL
    from poolconform.errors import PoolconformError
    from poolconform.testdirs import corpus_cases, export_cases

    cases = load_matrix(args.matrix).cases if args.matrix else corpus_cases()
    adaptive = [c for c in cases if c.op in ADAPTIVE_OPS]
    if adaptive:  # no ONNX operator to write: said, never a silent skip
        cases = [c for c in cases if c.op not in ADAPTIVE_OPS]
        print(f"poolconform: export declines {len(adaptive)} adaptive case(s): {ONNX_REFUSAL}", file=sys.stderr)
        if not cases:
            raise PoolconformError(f"nothing to export: every case is adaptive pooling ({ONNX_REFUSAL})")
    manifest = export_cases(cases, args.out)
    print(f"wrote {len(cases)} backend-test directories and {manifest}")
    return 0
