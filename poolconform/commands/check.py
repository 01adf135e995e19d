"""`poolconform check PATH...`: stored ONNX backend-test directories against their outputs."""

from __future__ import annotations

import argparse
import json
import sys
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np

from poolconform import outdir
from poolconform.commands.options import add_backend_options, expectations_of, selected_specs
from poolconform.errors import PoolconformError
from poolconform.pipeline import Session, execute
from poolconform.results import make_record, write_atomic
from poolconform.job import Job
from poolconform.runner import RunOptions
from poolconform.expectations import Expectation
from poolconform.oracle import reference_outputs
from poolconform.stored_data import STORED_DATA, Judge, against_stored, judge_stored
from poolconform.testdirs import StoredCase, printable
from poolconform.tomlfile import shown_path


#: A record's `suite` when its directory is one of the ONNX project's own node tests (--onnx-suite).
ONNX_SUITE = "onnx"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="run ONNX backend-test directories against their stored outputs",
                       description="PATH is a backend-test directory (model.onnx + test_data_set_N/), a folder "
                                   "holding many, or one data set folder DIR/test_data_set_N (that set alone). "
                                   "Every data set is judged: the first's records are named by the directory, "
                                   "each later one's DIR/test_data_set_N.")
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    p.add_argument("--onnx-suite", action="store_true",
                   help="also run the ONNX project's own pooling node tests from the installed onnx package")
    p.add_argument("--cases", action="append", default=[], metavar="GLOB",
                   help="check only the directories whose name (the records' case) matches GLOB "
                        "(repeatable; * and ? as in a shell); a GLOB that matches none is an error")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the records as a JSON list")
    p.add_argument("--out", type=outdir.out_folder, metavar="DIR", help="also write results.jsonl and the reports here")
    p.add_argument("--against", choices=("spec", "stored"), default="spec",
                   help="what backends are judged against: the spec (the oracle, where it reads the model; "
                        "the stored outputs are then judged once, as backend 'stored-data') or the stored outputs "
                        "(default: spec)")
    p.add_argument("--atol", type=non_negative_float, metavar="A",
                   help="with --against stored: absolute tolerance (|actual - stored| <= A + R*|stored|)")
    p.add_argument("--rtol", type=non_negative_float, metavar="R", help="with --against stored: relative tolerance")
    add_backend_options(p)
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from poolconform.testdirs import LoadFailure, discover

    expectations = expectations_of(args)  # a bad file stops us before any model runs
    if args.against != "stored" and (args.atol is not None or args.rtol is not None):
        raise PoolconformError("--atol and --rtol need --against stored (against the spec the tolerance is the spec's)")
    paths = list(args.paths)
    suite: set[Path] = set()  # the ONNX project's own test directories: their records say so
    if args.onnx_suite:
        from poolconform.onnx_suite import onnx_suite_dirs

        suite = {d.resolve() for d in onnx_suite_dirs()}  # generated once per onnx version, then cached
        paths += sorted(suite)
    if not paths:
        raise PoolconformError("check needs at least one PATH (or --onnx-suite)")
    chosen: list[str] = []  # the names --cases selected

    def wanted(name: str) -> bool:
        hit = any(fnmatchcase(name, pattern) for pattern in args.cases)
        if hit:
            chosen.append(name)
        return hit

    loaded = discover(paths, wanted if args.cases else None)
    unmatched = [p for p in args.cases if not any(fnmatchcase(name, p) for name in chosen)]
    if unmatched:  # an empty selection must not pass a gate (as `run --cases`)
        raise PoolconformError(f"--cases {unmatched[0]}: no test directory has such a name"
                               + (" (names are the directory names, e.g. test_maxpool_2d_pads)" if not chosen else ""))
    failures = [item for item in loaded if isinstance(item, LoadFailure)]
    if len(failures) == len(loaded):
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise PoolconformError(f"{failures[0].message}{more}")
    specs, required = selected_specs(args)
    judge = None
    if args.against == "stored" and (args.atol is not None or args.rtol is not None):
        judge = against_stored(args.atol or 0.0, args.rtol or 0.0)
    jobs: list[Job] = []
    early: list[dict] = []
    excused: list[Expectation] = []
    for item in loaded:
        in_suite = item.path.resolve() in suite
        if isinstance(item, LoadFailure):
            # One record: the directory, not any backend, is what failed.
            failed = make_record(item.name, STORED_DATA, "error", detail=f"cannot load: {printable(item.message)}")
            early.append({**failed, **({"suite": ONNX_SUITE} if in_suite else {"path": _shown(item.path)})})
            continue
        for data_set in item.each_data_set():  # each set its own records: a green covers every set
            job, data_record, reason = _job(data_set, args.against == "stored", judge)
            # where a finding's reproduce line finds the directory: --onnx-suite, or its path
            where = data_set.path / data_set.data_set_names[0] if data_set is not item else data_set.path
            fields: dict[str, Any] = {"suite": ONNX_SUITE} if in_suite else {"path": _shown(where)}
            if judge is not None:  # the tolerance judged by: a finding's reproduce line passes it on
                fields.update(stored_atol=args.atol or 0.0, stored_rtol=args.rtol or 0.0)
            job.record_fields = fields
            jobs.append(job)
            if data_record is not None:
                early.append({**data_record, **fields})
            if reason is not None:
                excused.append(Expectation(case=data_set.case.id, backend=STORED_DATA, statuses=("mismatch",),
                                           reason=reason, file="poolconform check", index=0))
    if excused:
        expectations = list(expectations or []) + excused
    if not jobs and not early:
        raise PoolconformError("no test directory to check")
    session = Session(
        specs=specs,
        options=RunOptions(timeout=args.timeout, jobs=args.jobs),
        out=args.out,
        require=required,
        expectations=expectations,
        title=f"poolconform check ({len(loaded)} models)",
        quiet=args.quiet,
        extra={"paths": [shown_path(p) for p in args.paths] + (["onnx-suite"] if args.onnx_suite else [])},
        preset_records=early,
    )
    misnamed = _misnamed([item for item in loaded if isinstance(item, StoredCase)])
    if misnamed:  # said before the run, even with --quiet: globs would name another model
        name, held = misnamed[0]
        print(f"poolconform check: warning: {len(misnamed)} folder(s) named for another case than their model "
              f"holds (e.g. {printable(name)} holds {held}); expectations and --cases match the folder name",
              file=sys.stderr)
    status, records, _ = execute(jobs, session)
    if args.json:
        write_atomic(args.json, json.dumps(list(records), indent=2) + "\n")
    return status


def _shown(path: Path) -> str:
    """A directory as a record names it: relative to the current folder where it lies under it,
    else absolute, so `poolconform check PATH` (a finding's reproduce line) finds it."""
    full = path.resolve()
    try:
        return shown_path(full.relative_to(Path.cwd().resolve()))
    except ValueError:
        return shown_path(full)


def _misnamed(items: list[StoredCase]) -> list[tuple[str, str]]:
    """(folder name, the model's own case id) for each folder named `test_<case id>` (as
    `export` names them) whose model is another case: a hand-edited or copied corpus."""
    from poolconform.case_ids import parse_case_id
    from poolconform.errors import CaseError

    found = []
    for item in items:
        name = item.name.rsplit("/", 1)[-1]
        try:
            held_case = item.case.replace(label=None)
            named_case = parse_case_id(name[len("test_"):] if name.startswith("test_") else name)
            # the input generator is in the data, not the model: the id's word for it stands
            named, held = named_case.id, held_case.replace(generator=named_case.generator).id
        except (CaseError, ValueError):
            continue  # not named by a case id (or no id describes the model): nothing to compare
        if named != held:
            found.append((item.name, held))
    return found


class _JudgedJob(Job):
    """A job with its own comparison (`--against stored --atol/--rtol`)."""

    __slots__ = ("judge",)


def _job(item: StoredCase, against_stored_outputs: bool, judge: Judge | None) -> tuple[Job, dict | None, str | None]:
    """The job for one directory, its `stored-data` record (None when nothing is judged
    apart) and why that record is excused (None when it is not)."""
    case = item.case
    if item.unexpressible:
        case = case.replace(onnx_only=f"the node is outside what poolconform translates ({item.unexpressible})")
    stored = [np.asarray(o).astype(np.float64) for o in item.outputs]
    if against_stored_outputs or item.unexpressible or item.expected_from != "stored":
        job: Job = Job(case, item.inputs, stored, expected_from=item.expected_from)
        if judge is not None:
            job = _JudgedJob(case, item.inputs, stored, expected_from=item.expected_from)
            job.judge = judge
        return job, None, None
    try:
        spec = reference_outputs(case, item.inputs)
    except PoolconformError:  # e.g. over the oracle's work limit: the stored outputs stay the truth
        return Job(case, item.inputs, stored, expected_from="stored"), None, None
    record, reason = judge_stored(case, spec, list(item.outputs), item.inputs)
    return Job(case, item.inputs, spec, expected_from="oracle"), record, reason


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return value
