"""Records held compactly: what a large run's reports read back costs a fraction of the
memory of parsed dicts (docs/speed.md, "Memory as the matrix grows").

A run of 100,000 cases on 8 backends reads back 800,000 records for its reports. Parsed as
dicts, each costs a hash table of 15-20 keys plus fresh copies of values that records
repeat. Almost all of them pass or are unsupported: the table keeps each of those as a
tuple of its values (strings, shapes and a case's params shared between records, keys
once per layout) and gives it back as a fresh dict equal to the parsed line, keys in the
same order (`dict(zip(keys, values))`, about as fast as reading a dict).

Disagreeing records (the few the reports show, and the ones expectations mark in place)
and any record the tuples cannot hold exactly (a nested value other than a case's params,
an expectation mark) are kept whole: the same dict every time, so marking them sticks.
A `final` table's records were marked as they were read (a run's reports): only the last
kind is kept whole, and disagreeing records spill like the others. A
compact record's dict is new on each access: writing a key into it changes nothing kept.
Its values are shared (a case's params dict, a shape list): read them, do not mutate them.

A table made with `spill` (a folder, or True for the system's temporary folder) holds at
most SPILL_ROWS compact rows in memory: each time that many have gathered they are
pickled, as one chunk, to an unnamed temporary file in that folder, and read back a chunk
at a time when iterated, so a run's report phase does not grow with its record count
(docs/speed.md, "Memory as the matrix grows"). Whole records stay in memory (they are the
few, and a mark written into one must stick; in a final table, only a record the tuples
cannot hold). What the table keeps per record is then 8 bytes of key; per case, the case
id's number, or in a final table nothing (its key is a hash of the (case, backend) names,
equal hashes checked on the names themselves; a final table is made from records already
unique, so the check finds none). A folder that cannot be written to, or fills up, leaves
the rows in memory: nothing is lost.
"""

from __future__ import annotations

import bisect
import math
import os
import pickle
import sys
import tempfile
from array import array
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, overload

import numpy as np

from poolconform.errors import PoolconformError

#: One result record: what results.jsonl holds a line of (poolconform.results makes and reads them).
Record = dict[str, Any]

#: Statuses kept as tuples; every other record is kept whole (see the module docstring).
COMPACT_STATUSES = frozenset({"pass", "unsupported"})
#: Keys that expectations write into records in place: a record holding one is kept whole.
MARKS = frozenset({"expected", "expected_reason", "expected_link"})
_ZERO = 0.0
_LONG_TEXT = 200  # longer strings are rarely repeated: kept as they are, not looked up
#: Rows a spilling table holds in memory before it writes them to its file as one chunk
#: (about 3 MB of rows; reading a chunk back costs about 1 us a row).
SPILL_ROWS = 8192


class RecordTable(Sequence[Record]):
    """Records in the order given; a later record of the same (case, backend) replaces the
    earlier one where that stood (as results.jsonl's reader always has)."""

    def __init__(self, records: Iterable[Record] = (), *, spill: bool | Path = False, final: bool = False) -> None:
        #: The records carry their final marks (applied as they were read, expectations.Marking)
        #: and nothing writes into them later: disagreeing and marked ones are held compactly too.
        self._final = final
        self._rows: list[tuple | Record] = []  # after the spilled chunks: a compact record's values + its keys, or a whole record
        # Positional reads (os.pread): two loops over the table at once share the file.
        self._spilling = spill is not False and hasattr(os, "pread")
        self._spill_dir = spill if isinstance(spill, Path) else None  # None: the system's temporary folder
        self._spill: IO[bytes] | None = None  # the unnamed file the chunks are in
        self._chunks: list[tuple[int, int]] = []  # (offset, bytes) of each chunk, in order
        self._chunk_starts: list[int] = []  # the position of each chunk's first row
        self._spilled = 0  # rows in chunks
        self._wholes: list[Record] = []  # the whole records of spilled chunks, which hold their index
        self._loaded: tuple[int, list[tuple | Record]] | None = None  # the chunk __getitem__ read last
        self._keys = array("q")  # per row: case number << 32 | backend number, for replacement
        self._cases: dict[str, int] = {}
        self._backends: dict[str, int] = {}
        self._strings: dict[str, str] = {}
        self._lists: dict[tuple[int, ...], list[int]] = {}
        self._layouts: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._params: dict[str, dict] = {}  # case -> its params, one dict shared by its records
        self._settled = True
        for record in records:
            self.add(record)

    def add(self, record: Record) -> None:
        """Append `record`; a (case, backend) seen before is replaced in its first position."""
        if self._final:  # no table of case names: a hash of the pair (see _settle)
            self._keys.append(hash((record["case"], record["backend"])))
        else:
            case = self._cases.setdefault(sys.intern(record["case"]), len(self._cases))  # the reports' string for it too
            backend = self._backends.setdefault(record["backend"], len(self._backends))
            self._keys.append(case << 32 | backend)
        self._rows.append(self._row(record))
        self._settled = False
        if self._spilling and len(self._rows) >= SPILL_ROWS:
            self._write_chunk()

    def __len__(self) -> int:
        self._settle()
        return self._spilled + len(self._rows)

    @overload
    def __getitem__(self, index: int) -> Record: ...

    @overload
    def __getitem__(self, index: slice) -> list[Record]: ...

    def __getitem__(self, index: int | slice) -> Record | list[Record]:
        self._settle()
        if isinstance(index, slice):
            if not self._spilled:
                return [_record(row) for row in self._rows[index]]
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("record index out of range")
        if index >= self._spilled:
            return _record(self._rows[index - self._spilled])
        number = bisect.bisect_right(self._chunk_starts, index) - 1
        if self._loaded is None or self._loaded[0] != number:
            self._loaded = (number, self._read_chunk(number))
        return _record(self._loaded[1][index - self._chunk_starts[number]])

    def __eq__(self, other: object) -> bool:
        """Equal to a list or table of equal records in the same order (as a list would be)."""
        if not isinstance(other, (list, RecordTable)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]  # mutable, as a list

    def __iter__(self) -> Iterator[Record]:
        self._settle()
        for row in self._all_rows():
            yield dict(zip(row[-1], row)) if type(row) is tuple else row  # type: ignore[misc]

    def _all_rows(self) -> Iterator[tuple | Record]:
        """Every row in order: the spilled chunks, read back one at a time, then the rest."""
        for number in range(len(self._chunks)):
            yield from self._read_chunk(number)
        yield from self._rows

    def sort_by_key(self) -> None:
        """Order the records by case id, then backend name (a merged results.jsonl's order)."""
        self._settle()
        self._unspill()
        if not self._rows:
            return
        if self._final:  # keys are hashes: order by the names themselves
            names = self._pairs()
            by_name = sorted(range(len(names)), key=names.__getitem__)
            self._rows = [self._rows[i] for i in by_name]
            self._keys = array("q", (self._keys[i] for i in by_name))
            return
        case_rank = _ranks(self._cases)
        backend_rank = _ranks(self._backends)
        keys = np.frombuffer(self._keys, dtype=np.int64)
        order = np.argsort(case_rank[keys >> 32] << 32 | backend_rank[keys & 0xFFFFFFFF], kind="stable")
        self._rows = [self._rows[i] for i in order.tolist()]
        self._keys = array("q", keys[order].tobytes())

    def _pairs(self) -> list[tuple[str, str]]:
        """(case, backend) of each row in memory: what a final table's hashed keys stand for."""
        return [(r["case"], r["backend"]) for r in map(_record, self._rows)]

    def _row(self, record: Record) -> tuple | Record:
        """The record as a tuple of (shared) values ending with its keys; itself when it must stay whole."""
        if not self._final and (record.get("status") not in COMPACT_STATUSES or not MARKS.isdisjoint(record)):
            return self._whole(record)
        values: list[Any] = []
        for key, value in record.items():
            kind = type(value)
            if kind is dict:
                value = self._shared_params(record, key, value)
                if value is None:
                    return self._whole(record)
            elif kind is float:
                if value == 0.0 and math.copysign(1.0, value) > 0:
                    value = _ZERO
            elif kind is list and not all(type(v) is int for v in value):
                return self._whole(record)
            elif value is not None and kind not in (str, int, bool, list):
                return self._whole(record)
            else:
                value = self._shared(value)
            values.append(value)
        keys = tuple(record)
        values.append(self._layouts.setdefault(keys, keys))
        return tuple(values)

    def _whole(self, record: Record) -> Record:
        """A record kept as its own dict, its short strings and its case's equal params shared."""
        out: Record = {}
        for key, value in record.items():
            if type(value) is dict:
                value = self._shared_params(record, key, value) or value
            out[self._strings.setdefault(key, key)] = self._shared(value)
        return out

    def _shared_params(self, record: Record, key: str, params: dict) -> dict | None:
        """One params dict per case for all its records (lists inside shared too); None when
        this is not a case's params or differs from what another record of the case said."""
        case = record["case"]
        if key != "params" or not isinstance(case, str):
            return None
        kept = self._params.get(case)
        if kept is None:
            kept = self._params[case] = {self._strings.setdefault(k, k): self._shared(v) for k, v in params.items()}
        return kept if kept == params else None

    def _shared(self, value: Any) -> Any:
        """A string or a list of ints as the one equal object kept; any other value as it is."""
        kind = type(value)
        if kind is str and len(value) <= _LONG_TEXT:
            return self._strings.setdefault(value, value)
        if kind is list and all(type(v) is int for v in value):
            return self._lists.setdefault(tuple(value), value)
        return value

    def _write_chunk(self) -> None:
        """Move the rows in memory to the spill file as one chunk; where the file cannot be
        made or written, stop spilling and keep them (and every later row) in memory."""
        wholes_before = len(self._wholes)
        rows: list[tuple | int] = []
        for row in self._rows:
            if type(row) is tuple:
                rows.append(row)
            else:  # kept in memory; the chunk holds its index
                rows.append(len(self._wholes))
                self._wholes.append(row)  # type: ignore[arg-type]
        data = pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            if self._spill is None:
                self._spill = tempfile.TemporaryFile(dir=self._spill_dir, prefix="poolconform-records-")
            offset = self._chunks[-1][0] + self._chunks[-1][1] if self._chunks else 0  # after the last chunk
            written = os.pwrite(self._spill.fileno(), data, offset)
            if written != len(data):
                raise OSError("short write")
        except OSError:
            del self._wholes[wholes_before:]
            self._spilling = False
            return
        self._chunks.append((offset, len(data)))
        self._chunk_starts.append(self._spilled)
        self._spilled += len(self._rows)
        self._rows = []
        # Sharing is only worth it within a chunk (pickle keeps it there): what is kept for
        # sharing across records would otherwise grow with the cases.
        self._strings.clear()
        self._lists.clear()
        self._params.clear()

    def _read_chunk(self, number: int) -> list[tuple | Record]:
        """A spilled chunk's rows, its whole records the ones kept in memory."""
        assert self._spill is not None
        offset, size = self._chunks[number]
        try:
            data = os.pread(self._spill.fileno(), size, offset)
            if len(data) != size:
                raise OSError(f"read {len(data)} of {size} bytes")
        except OSError as exc:  # the disk under the folder failed: say so in one line
            raise PoolconformError(f"cannot read back the records held in a temporary file ({exc}); "
                                   "results.jsonl holds every record") from None
        rows = pickle.loads(data)
        wholes = self._wholes
        return [wholes[row] if type(row) is int else row for row in rows]

    def _unspill(self) -> None:
        """Bring every spilled row back into memory (for an operation that needs them all)."""
        if not self._spilled:
            return
        self._rows = list(self._all_rows())
        self._chunks, self._chunk_starts, self._wholes = [], [], []
        self._spilled = 0
        self._loaded = None
        if self._spill is not None:
            self._spill.close()
            self._spill = None

    def _settle(self) -> None:
        """Apply replacements: a repeated (case, backend) keeps its first position and its
        last record. Checked once after adding (a sort of one int per record); a spilled
        table that has one is read back into memory to apply it (results.jsonl's reader
        refuses repeats, so a run never gets here)."""
        if self._settled:
            return
        self._settled = True
        keys = np.frombuffer(self._keys, dtype=np.int64) if len(self._keys) else np.empty(0, np.int64)
        if len(np.unique(keys)) == len(keys):
            return
        self._unspill()
        # A final table's keys are hashes of the pair: equal hashes are checked on the names.
        exact: Sequence = self._pairs() if self._final else self._keys
        first: dict[object, int] = {}
        keep: list[int] = []
        for i, key in enumerate(exact):
            if key in first:
                self._rows[first[key]] = self._rows[i]
            else:
                first[key] = i
                keep.append(i)
        self._rows = [self._rows[i] for i in keep]
        self._keys = array("q", (self._keys[i] for i in keep))


def _ranks(numbers: dict[str, int]) -> np.ndarray:
    """For each number given to a name, the name's rank in sorted order."""
    rank = np.empty(len(numbers), np.int64)
    for position, name in enumerate(sorted(numbers)):
        rank[numbers[name]] = position
    return rank


def _record(row: tuple | Record) -> Record:
    return dict(zip(row[-1], row)) if isinstance(row, tuple) else row
