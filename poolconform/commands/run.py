"""`poolconform run`: a matrix through every backend, reports under --out."""

from __future__ import annotations

import argparse
from pathlib import Path

from poolconform import outdir, shard
from poolconform.commands.options import add_backend_options, expectations_of, select_cases, selected_specs
from poolconform.matrix import load_matrix
from poolconform.pipeline import Session, execute
from poolconform.tomlfile import shown_path
from poolconform.job import JobList
from poolconform.runner import RunOptions


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a matrix of pooling cases on every backend and report agreement",
                       description="Run a matrix (the embedded default when --matrix is not given) on every "
                                   "backend, compare with the float64 oracle, write reports to --out.")
    p.add_argument("--matrix", type=Path, metavar="FILE.toml",
                   help="matrix file ([matrix] table, or a pyproject.toml with [tool.poolconform.matrix])")
    p.add_argument("--out", type=outdir.out_folder, default=Path("poolconform-report"), metavar="DIR",
                   help="report folder (default: poolconform-report/)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in the same --out")
    p.add_argument("--cases", action="append", default=[], metavar="GLOB",
                   help="run only the cases whose id matches GLOB (repeatable; * and ? as in a shell); "
                        "an exact id that no matrix holds is run too")
    p.add_argument("--shard", metavar="K/N", help="run only the K-th of N stable slices of the matrix")
    add_backend_options(p)
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    expectations = expectations_of(args)  # a bad file stops us before any case runs
    expansion = load_matrix(args.matrix)
    cases = expansion.cases
    extra: dict = {"matrix": shown_path(args.matrix) if args.matrix else "default"}
    if args.cases:
        cases = select_cases(cases, args.cases)
        extra["selected_cases"] = list(args.cases)  # "cases" is the count
    if args.shard is not None:
        k, n = shard.parse_shard(args.shard)
        matrix_cases, cases = cases, shard.select(cases, k, n)
        extra["shard"] = f"{k}/{n}"
    specs, required = selected_specs(args)
    if args.shard is not None:  # what `merge` checks a set of shards by
        extra[shard.IDENTITY_KEY] = shard.identity(matrix_cases, k, n, [s.name for s in specs])
    session = Session(
        specs=specs,
        options=RunOptions(timeout=args.timeout, jobs=args.jobs),
        out=args.out,
        resume=args.resume,
        require=required,
        expectations=expectations,
        dropped=dict(expansion.dropped),
        title="poolconform run",  # the summary adds the counts
        quiet=args.quiet,
        extra=extra,
    )
    status, _, _ = execute(JobList(cases), session)  # each job made when its case is reached
    return status
