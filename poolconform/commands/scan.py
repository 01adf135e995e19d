"""`poolconform scan MODEL`: the pooling layers of a user's own model, on every backend.

MODEL is an ONNX file, a Keras `.keras` file, or a torch factory `package.module:factory`;
the last two are exported to ONNX first (poolconform.scan_sources)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from poolconform import outdir
from poolconform.commands.options import add_backend_options, expectations_of, selected_specs
from poolconform.pipeline import Session, execute
from poolconform.report.text import printable
from poolconform.results import FAILING, Record, make_record, write_atomic
from poolconform.job import Job
from poolconform.runner import RunOptions
from poolconform.errors import PoolconformError
from poolconform.scan import PoolGroup, ScannedModel, parse_input_shapes, scan_model
from poolconform.scan_sources import DEFAULT_TORCH_OPSET, KERAS_BACKENDS, scan_source, source_kind

#: The pseudo-backend of a node poolconform cannot turn into a case (its record says why).
SCAN_BACKEND = "scan"
#: Written next to the backend-test folders of --export: which model nodes each folder stands for.
EXPORT_NODES_FILE = "scan.json"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scan", help="judge the pooling layers of your own model (ONNX, .keras, torch) on every backend",
                       description="Read MODEL.onnx without its weights, turn every pooling node into a case with "
                                   "its exact attributes, input shape, dtype and opset, and run those cases like "
                                   "`run`. Reports name the model's nodes. MODEL may also be a Keras .keras file or "
                                   "a torch factory package.module:factory (with --input-shape): both are exported "
                                   "to ONNX first, and pooling layers the exporter changed are listed.")
    p.add_argument("model", metavar="MODEL", help="MODEL.onnx, MODEL.keras, or package.module:factory")
    p.add_argument("--input-shape", action="append", metavar="NAME=1x3x224x224",
                   help="sizes of a model input with symbolic dimensions; for a torch factory, the example "
                        "input(s) in call order (repeatable)")
    p.add_argument("--opset", type=int, metavar="N",
                   help=f"opset of the ONNX export of a .keras file or torch factory (torch default: "
                        f"{DEFAULT_TORCH_OPSET}; Keras: its exporter's default)")
    p.add_argument("--keras-backend", choices=KERAS_BACKENDS, metavar="NAME",
                   help="Keras backend that exports a .keras file (default: Keras' own setting, KERAS_BACKEND "
                        f"or ~/.keras/keras.json; one of {', '.join(KERAS_BACKENDS)})")
    p.add_argument("--out", type=outdir.out_folder, default=Path("poolconform-report"), metavar="DIR",
                   help="report folder (default: poolconform-report/)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted scan in the same --out")
    p.add_argument("--export", type=Path, metavar="DIR",
                   help="also write the model's pooling cases as backend-test directories with the oracle's "
                        "outputs (`poolconform check DIR` runs them later)")
    p.add_argument("--require-verified", action="store_true",
                   help="exit 2 when any pooling node is not verified (not checked, or no selected backend ran "
                        "it): a CI gate that must cover every node (without it such nodes are a warning)")
    add_backend_options(p)
    p.set_defaults(handler=main)


class ScanJob(Job):
    """A case of the model: every record it gives names the model's nodes."""

    __slots__ = ("record_fields",)


def main(args: argparse.Namespace) -> int:
    expectations = expectations_of(args)  # a bad file stops us before the model is read
    shapes = parse_input_shapes(args.input_shape)
    kind = source_kind(args.model)
    if kind == "onnx":
        if args.opset is not None or args.keras_backend is not None:
            raise PoolconformError(f"{args.model}: --opset and --keras-backend apply to a .keras file or a torch "
                                   "factory, not to an ONNX model")
        scanned = scan_model(Path(args.model), shapes)
    else:
        if args.opset is not None and not 7 <= args.opset <= 30:
            raise PoolconformError(f"--opset {args.opset}: expected an ONNX opset between 7 and 30")
        scanned = scan_source(args.model, kind, shapes, args.opset, args.keras_backend, scan_model)
    layer_of = dict(scanned.source["layer_of_node"]) if scanned.source else {}
    specs, required = selected_specs(args)
    groups = scanned.groups()
    if not args.quiet:
        for note in scanned.notes:
            print(f"poolconform scan: {note}", file=sys.stderr)
    if args.export is not None:
        _export(scanned, groups, args.export, args.quiet)
    jobs: list[Job] = []
    early: list[Record] = []
    for group in groups:
        fields: dict[str, Any] = {"nodes": list(group.nodes), "config": group.config}
        if layer_of:
            fields["layers"] = [layer for node in group.nodes for layer in layer_of.get(node, [])]
        if group.problem is None and group.case is not None:
            job = ScanJob(group.case)
            job.record_fields = fields
            jobs.append(job)
        else:
            early.append(make_record(group.case_id, SCAN_BACKEND, "unsupported", op=group.op,
                                     detail=f"not checked: {group.problem}", **fields))
    session = Session(
        specs=specs,
        options=RunOptions(timeout=args.timeout, jobs=args.jobs),
        out=args.out,
        resume=args.resume,
        require=required,
        expectations=expectations,
        title=f"poolconform scan {printable(Path(args.model).name)} ({len(scanned.nodes)} pooling node(s), {len(groups)} case(s))",
        quiet=args.quiet,
        extra={"scan": scanned.describe()},
        preset_records=early,
    )
    status, records, _ = execute(jobs, session)
    if not args.quiet:
        print("\n".join(node_lines(scanned, groups, records)))
    if status in (0, 2) and not any(r["status"] != "unsupported" and r["backend"] != SCAN_BACKEND
                                    for r in records):
        # Nothing was computed anywhere: a green here would vouch for layers nobody ran.
        print(f"poolconform scan: none of the {len(scanned.nodes)} pooling node(s) was run on any backend; "
              "nothing was verified (see the reasons above)", file=sys.stderr)
        return 2
    unverified = unverified_nodes(groups, records)
    if unverified:  # said even with --quiet: the verdict above covers the other nodes only
        strict = args.require_verified
        print(f"poolconform scan: {'error' if strict else 'warning'}: {len(unverified)} of {len(scanned.nodes)} "
              f"pooling node(s) NOT VERIFIED ({', '.join(printable(n) for n in unverified[:5])}"
              f"{', ...' if len(unverified) > 5 else ''}): not checked, or no selected backend ran them; "
              + ("--require-verified fails the scan" if strict else "the verdict covers the other nodes only"),
              file=sys.stderr)
        if strict and status == 0:  # a disagreement (1) says more than what was not run
            return 2
    return status


def unverified_nodes(groups: list[PoolGroup], records: Sequence[Record]) -> list[str]:
    """The pooling nodes no backend judged: not checked (a subgraph, an attribute poolconform
    does not model), or unsupported on every selected backend."""
    judged = {r["case"] for r in records if r["backend"] != SCAN_BACKEND and r["status"] != "unsupported"}
    return [n for g in groups if g.problem is not None or g.case_id not in judged for n in g.nodes]


def _export(scanned: ScannedModel, groups: list[PoolGroup], out: Path, quiet: bool) -> None:
    from poolconform.testdirs import dir_name, export_cases

    runnable = [g for g in groups if g.problem is None and g.case is not None]
    manifest = export_cases([g.case for g in runnable if g.case is not None], out)
    nodes = {"model": scanned.describe()["model"], "opset": scanned.opset,
             "dirs": {dir_name(g.case): list(g.nodes) for g in runnable if g.case is not None},
             "not_exported": {n: g.problem for g in groups if g.problem for n in g.nodes}}
    try:
        write_atomic(out / EXPORT_NODES_FILE, json.dumps(nodes, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        raise PoolconformError(f"cannot write {str(out / EXPORT_NODES_FILE)!r}: {exc.strerror or exc}; "
                               f"the {len(runnable)} backend-test directories are written") from None
    if not quiet:
        print(f"wrote {len(runnable)} backend-test directories, {manifest} and {out / EXPORT_NODES_FILE}")


def _names(group: PoolGroup) -> str:
    shown = ", ".join(f"`{n}`" for n in group.nodes[:6])
    return shown + (f" and {len(group.nodes) - 6} more" if len(group.nodes) > 6 else "")


def node_lines(scanned: ScannedModel, groups: list[PoolGroup], records: Sequence[Record]) -> list[str]:
    """One verdict per configuration, naming its nodes: `node \\`pool1\\` (MaxPool k3 s2 p1 ceil)
    disagrees on openvino-cpu: ...`; agreement and what was not run are said too."""
    by_case: dict[str, list[Record]] = {}
    for r in records:
        by_case.setdefault(r["case"], []).append(r)
    lines = [f"pooling nodes of {printable(scanned.path)} (opset {scanned.opset}): {len(scanned.nodes)} node(s), "
             f"{len(groups)} configuration(s)"]
    if scanned.source is not None:
        lines.append(f"  the exporter changed {len(scanned.changes)} of {scanned.source['layers']} pooling layer(s)"
                     + (":" if scanned.changes else ""))
        lines.extend(f"    {printable(change)}" for change in scanned.changes)
    for group in groups:
        label = f"node{'s' if len(group.nodes) > 1 else ''} {_names(group)} ({group.config})"
        mine = sorted(by_case.get(group.case_id, []), key=lambda r: r["backend"])
        if group.problem is not None:
            lines.append(f"  {label}: not checked: {printable(group.problem)}")
            continue
        failing = [r for r in mine if r["status"] in FAILING]
        for r in failing:
            known = " (expected)" if r.get("expected") else ""
            lines.append(f"  {label} disagrees on {r['backend']}{known}: {r['status']}: {printable(r.get('detail'))[:160]}")
        passed = [r["backend"] for r in mine if r["status"] == "pass"]
        unsupported = [r["backend"] for r in mine if r["status"] == "unsupported"]
        if not failing and not passed and mine:
            lines.append(f"  {label}: NOT VERIFIED: no selected backend ran it"
                         + (f" (unsupported on {', '.join(unsupported)})" if unsupported else ""))
        elif not failing:
            lines.append(f"  {label}: agrees with the spec on {len(passed)} backend(s)"
                         + (f"; unsupported on {', '.join(unsupported)}" if unsupported else ""))
        elif unsupported:
            lines.append(f"  {label}: unsupported on {', '.join(unsupported)}")
        if not mine:
            lines.append(f"  {label}: no record (interrupted?)")
    return lines
