"""Result records, the durable results.jsonl, resume, and atomic report writes.

One record per (case, backend). results.jsonl is appended and flushed as records
complete, so a run killed at any moment (SIGKILL included) loses at most the batch in
flight; `--resume` repairs a torn last line and skips the records already there.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from poolconform.errors import PoolconformError
from poolconform.record_table import MARKS, Record, RecordTable

STATUSES = ("pass", "mismatch", "shape-mismatch", "unsupported", "error", "crash", "timeout")
#: Statuses that make a run fail unless an expectation covers them.
FAILING = ("mismatch", "shape-mismatch", "error", "crash", "timeout")

RESULTS_FILE = "results.jsonl"
#: Record backends that are not frameworks: check's stored outputs (poolconform.stored_data.STORED_DATA)
#: and the model nodes scan could not turn into cases (poolconform.commands.scan.SCAN_BACKEND).
PSEUDO_BACKENDS = ("stored-data", "scan")


def make_record(
    case_id: str,
    backend: str,
    status: str,
    *,
    expected_shape: list[int] | None = None,
    actual_shape: list[int] | None = None,
    max_abs_err: float | None = None,
    max_rel_err: float | None = None,
    max_ulp: float | None = None,
    detail: str = "",
    **extra: Any,
) -> Record:
    """A record with the fields README.md ("What a run gives you") promises, in a fixed order, plus extras."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; allowed: {', '.join(STATUSES)}")
    record: Record = {
        "case": case_id,
        "backend": backend,
        "status": status,
        "expected_shape": expected_shape,
        "actual_shape": actual_shape,
        "max_abs_err": _finite(max_abs_err),
        "max_rel_err": _finite(max_rel_err),
        "max_ulp": _finite(max_ulp),
        "detail": detail.replace("\n", " ").strip(),
    }
    record.update(extra)
    return record


def _finite(value: float | None) -> float | str | None:
    """JSON has no Infinity: write it as the string "inf" (readers parse it back)."""
    if value is None:
        return None
    if value != value:
        return "nan"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return float(value)


def record_key(record: Record) -> tuple[str, str]:
    return (record["case"], record["backend"])


def numeric(value: float | str | None) -> float | None:
    """A record figure as a float (the inverse of _finite)."""
    if value is None:
        return None
    return float(value)


class ResultsWriter:
    """Appends records to results.jsonl, one fsynced write per batch.

    Never through a symlink (O_NOFOLLOW). A batch that cannot be written (a full disk)
    is cut back off, so the file keeps only whole records, and the run stops with one line.
    """

    def __init__(self, path: Path, resume: bool) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if resume:
                repair_torn_tail(path)
            flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_APPEND if resume else os.O_TRUNC)
            self._fd: int | None = os.open(path, flags, 0o666)
        except OSError as exc:
            raise PoolconformError(f"cannot write {str(path)!r}: {_reason(exc)}") from None

    def write(self, records: Iterable[Record]) -> None:
        data = "".join(json.dumps(r, sort_keys=False) + "\n" for r in records).encode("utf-8")
        if not data or self._fd is None:
            return
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
        except OSError as exc:
            try:
                os.ftruncate(self._fd, start)  # keep whole records only
            except OSError:
                pass  # resume cuts a torn tail anyway
            raise PoolconformError(f"cannot write {str(self.path)!r}: {_reason(exc)}; "
                                   "the records before this batch are kept") from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def repair_torn_tail(path: Path) -> None:
    """Cut a last line that a kill left half-written; keep a whole record that only lacks its newline.

    Resume counts every parseable record as done, so a complete record must never be
    cut (it would then be neither in the file nor rerun). Only the file's tail is read:
    a results.jsonl of 800,000 records is most of a gigabyte.
    """
    if not path.exists():
        return
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        keep = size
        needs_newline = False
        first = True
        for start, line in _lines_from_end(f, size):
            if first and not line.endswith(b"\n") and _is_record(line):
                needs_newline = True
            first = False
            if _is_record(line):
                break
            keep = start
    if keep < size:
        os.truncate(path, keep)  # cut in place: a rewrite killed half-way would lose every record
    if needs_newline:
        with open(path, "ab") as f:
            f.write(b"\n")


def _lines_from_end(f: Any, size: int, block: int = 1 << 16) -> Iterator[tuple[int, bytes]]:
    """(offset, line with its newline) of an open binary file's lines, last first, read a block at a time."""
    pending = b""  # the file from `position` up to the lines already given
    position = size
    while position > 0:
        step = min(block, position)
        position -= step
        f.seek(position)
        pending = f.read(step) + pending
        while True:  # a newline before pending's own last byte closes the line after it
            cut = pending.rfind(b"\n", 0, len(pending) - 1)
            if cut < 0:
                break
            line, pending = pending[cut + 1:], pending[:cut + 1]
            yield position + cut + 1, line
    if pending:
        yield 0, pending


def _is_record(line: bytes) -> bool:
    try:
        value = json.loads(line)
    except ValueError:
        return False
    return isinstance(value, dict) and "case" in value and "backend" in value


def read_records(path: Path, *, spill: bool = False,
                 mark: Callable[[Record], Record] | None = None) -> RecordTable:
    """Records of a results.jsonl, held compactly (poolconform/record_table.py); a torn last
    line is ignored (see iter_records). With `spill`, all but the last few thousand are
    held in an unnamed temporary file beside it instead of in memory (a run's reports).
    With `mark` (expectations.Marking.mark, or a function returning the record unchanged),
    each record is marked as it is read and the table is final: nothing marks it later, so
    disagreeing records are held compactly (and spill) too."""
    records = iter_records(path)
    if mark is not None:
        records = (mark(r) for r in records)
    return RecordTable(records, spill=path.parent if spill else False, final=mark is not None)


def iter_records(path: Path, keys: RecordKeys | None = None) -> Iterator[Record]:
    """The records of a results.jsonl one by one, none of them held; a torn last line is ignored.
    An expectation's marks in a line ("expected", ...) are dropped: what excuses a record is the
    --expectations file the command is given, not an edit of results.jsonl.

    Only the last line can be torn by a kill; an unreadable line before it, a record
    without a string case and backend and a known status, or a second record of one (case,
    backend) means the file is not poolconform's (or was edited), and is refused naming the
    line rather than skipped or resolved. `keys`, where given, collects the (case, backend)
    pairs read (what --resume skips), so they are not gathered twice.
    """
    if not path.exists():
        return
    torn: int | None = None
    seen = keys if keys is not None else RecordKeys()  # one bit per (case, backend): a run writes each pair once
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            if torn is not None:
                raise PoolconformError(f"{str(path)!r} line {torn}: not JSON (only the last line may be torn by a kill)")
            try:
                record = json.loads(raw)
            except ValueError:
                torn = number  # a torn line from a killed run, if nothing follows it
                continue
            problem = record_problem(record)
            if problem:
                raise PoolconformError(f"{str(path)!r} line {number}: {problem}")
            if not seen.add(record["case"], record["backend"]):  # which one would count? Neither, quietly
                raise PoolconformError(f"{str(path)!r} line {number}: a second record of {record['case']!r} on "
                                       f"{record['backend']!r}; a run writes one per case and backend, so the "
                                       "file was edited or joined with another")
            for mark in MARKS:  # only --expectations excuses a record, never a line in the file
                record.pop(mark, None)
            yield record


class RecordKeys:
    """The (case, backend) pairs that have a record, as one bitmask of backends per case:
    what `--resume` skips, at about 100 bytes a case instead of a tuple per record."""

    def __init__(self, keys: Iterable[tuple[str, str]] = ()) -> None:
        self._backends: dict[str, int] = {}
        self._cases: dict[str, int] = {}
        self._count = 0
        for case, backend in keys:
            self.add(case, backend)

    def add(self, case: str, backend: str) -> bool:
        """Add the pair; False when it was there already."""
        bit = 1 << self._backends.setdefault(backend, len(self._backends))
        mask = self._cases.get(case, 0)
        if mask & bit:
            return False
        self._cases[case] = mask | bit
        self._count += 1
        return True

    def backends(self) -> list[str]:
        """The backends that have at least one record."""
        held = 0
        for mask in self._cases.values():
            held |= mask
        return [name for number, name in enumerate(self._backends) if held >> number & 1]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != 2:
            return False
        number = self._backends.get(key[1])
        return number is not None and bool(self._cases.get(key[0], 0) >> number & 1)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[tuple[str, str]]:
        names = list(self._backends)
        for case, mask in self._cases.items():
            for number, name in enumerate(names):
                if mask >> number & 1:
                    yield case, name


def record_problem(record: Any) -> str | None:
    """Why a parsed line is not a usable record; None when it is one."""
    if not isinstance(record, dict) or "case" not in record or "backend" not in record:
        return "not a poolconform record"
    for key in ("case", "backend"):
        if not isinstance(record[key], str) or not record[key]:
            return f"{key} must be a non-empty string, not {record[key]!r}"
    if "status" not in record:
        return "the record has no status"
    if record["status"] not in STATUSES:
        return f"unknown status {record['status']!r}; allowed: {', '.join(STATUSES)}"
    return _field_problem(record)


#: Fields the reports read, by the values a record may hold there (absent is always fine).
#: A number, None, "inf", "-inf" or "nan" (stored_atol/stored_rtol: check --against stored's --atol/--rtol).
_FIGURES = ("max_abs_err", "max_rel_err", "max_ulp", "atol", "seconds", "stored_atol", "stored_rtol")
_SHAPES = ("expected_shape", "actual_shape")  # a list of integers, or None
_TEXTS = ("detail", "note", "digest", "op", "dtype", "expected_from", "suite", "path")  # text, or None


def _field_problem(record: dict) -> str | None:
    """Why a field the reports read holds what no run writes there (a corrupt or edited line,
    which would otherwise stop the reports with a traceback, or worse, be misread)."""
    for key in _FIGURES:
        value = record.get(key)
        if not (value is None or _is_number(value) or value in ("inf", "-inf", "nan")):
            return f"{key} must be a number, not {_short(value)}"
    for key in _SHAPES:
        value = record.get(key)
        if not (value is None or isinstance(value, list) and all(_is_int(v) for v in value)):
            return f"{key} must be a list of integers, not {_short(value)}"
    for key in _TEXTS:
        value = record.get(key)
        if not (value is None or isinstance(value, str)):
            return f"{key} must be text, not {_short(value)}"
    if not (record.get("opset") is None or _is_int(record["opset"])):
        return f"opset must be an integer, not {_short(record['opset'])}"
    params = record.get("params")
    if params is not None:
        if not isinstance(params, dict):
            return f"params must be an object, not {_short(params)}"
        for key, value in params.items():
            if isinstance(value, list):
                if not all(_is_number(v) for v in value):
                    return f"params.{key} must be a list of numbers, not {_short(value)}"
            elif not (value is None or isinstance(value, (str, bool)) or _is_number(value)):
                return f"params.{key} must be a number, text or a list of numbers, not {_short(value)}"
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def write_atomic(path: Path, text: str | Iterable[str]) -> None:
    """Write a whole file so readers see the old or the new one, never half of it; `text`
    may come in pieces (a large merge writes its records one by one, never as one string)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide reports from CI readers
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            if isinstance(text, str):
                f.write(text)
            else:
                f.writelines(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (a power cut must not bring back the old file)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")
