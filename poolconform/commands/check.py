"""`poolconform check PATH...`: stored ONNX backend-test directories against their outputs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from poolconform.commands.options import add_backend_options, selected_specs
from poolconform.errors import PoolconformError
from poolconform.pipeline import Session, execute
from poolconform.results import make_record, write_atomic
from poolconform.runner import Job, RunOptions


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="run ONNX backend-test directories against their stored outputs",
                       description="PATH is a backend-test directory (model.onnx + test_data_set_N/) or a folder "
                                   "holding many. Each record's case is the directory name.")
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    p.add_argument("--onnx-suite", action="store_true",
                   help="also run the ONNX project's own pooling node tests from the installed onnx package")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the records as a JSON list")
    p.add_argument("--out", type=Path, metavar="DIR", help="also write results.jsonl and the reports here")
    add_backend_options(p)
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from poolconform.testdirs import LoadFailure, discover

    paths = list(args.paths)
    if args.onnx_suite:
        from poolconform.onnx_suite import onnx_suite_dirs

        paths += onnx_suite_dirs()  # generated once per onnx version, then cached
    if not paths:
        raise PoolconformError("check needs at least one PATH (or --onnx-suite)")
    loaded = discover(paths)
    failures = [item for item in loaded if isinstance(item, LoadFailure)]
    if len(failures) == len(loaded):
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise PoolconformError(f"{failures[0].message}{more}")
    specs, required = selected_specs(args)
    names = [s.name for s in specs]
    jobs: list[Job] = []
    early: list[dict] = []
    for item in loaded:
        if isinstance(item, LoadFailure):
            early += [make_record(item.name, n, "error", detail=f"cannot load: {item.message}") for n in names]
            continue
        case = item.case
        if item.unexpressible:
            case = case.replace(onnx_only=f"the node is outside what poolconform translates ({item.unexpressible})")
        expected = [np.asarray(o).astype(np.float64) for o in item.outputs]
        jobs.append(Job(case, item.inputs, expected, expected_from=item.expected_from))
    if not jobs and not early:
        raise PoolconformError("no test directory to check")
    session = Session(
        specs=specs,
        options=RunOptions(timeout=args.timeout, jobs=args.jobs),
        out=args.out,
        require=required,
        expectations=args.expectations,
        title=f"poolconform check ({len(loaded)} models)",
        quiet=args.quiet,
        extra={"paths": [str(p) for p in args.paths] + (["onnx-suite"] if args.onnx_suite else [])},
        preset_records=early,
    )
    status, records, _ = execute(jobs, session)
    if args.json:
        write_atomic(args.json, json.dumps(records, indent=2) + "\n")
    return status
