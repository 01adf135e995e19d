"""A matrix's cases, made when read: a 100,000-case matrix is held as one number per case,
not as 100,000 PoolCase objects (docs/speed.md, "Memory as the matrix grows").

Expanding a matrix still makes and validates every combination once (that is how the
impossible ones are dropped and the repeats found), but keeps only each kept case's
combination number: which table, which product of its value lists. Reading a case makes
it again from that number (without validating it a second time: validation.build_case), so
a run holds the cases it is working on, not the matrix. Cases given one by one (the seed's golden cases, a
--cases id that no matrix holds) are kept as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, overload

import numpy as np

from poolconform.case import PoolCase

#: A code's source (a table or a list of given cases) lives in its bits from here up.
_SOURCE_SHIFT = 32
_NUMBER_MASK = (1 << _SOURCE_SHIFT) - 1


class TableSource:
    """One matrix table's value lists: combination number -> the case it names."""

    def __init__(self, values: dict[str, list[Any]], build: Callable[[dict[str, Any]], PoolCase]) -> None:
        self.names = list(values)
        self.lists = [list(v) for v in values.values()]
        self.build = build  # a combination's values -> its (already validated) case

    def case(self, number: int) -> PoolCase:
        """The case of combination `number` (itertools.product's order: the last list varies fastest)."""
        chosen: list[Any] = []
        for values in reversed(self.lists):
            number, index = divmod(number, len(values))
            chosen.append(values[index])
        return self.build(dict(zip(self.names, reversed(chosen))))


class GivenSource:
    """Cases given one by one, held as they are."""

    def __init__(self, cases: Iterable[PoolCase]) -> None:
        self.cases = list(cases)

    def case(self, number: int) -> PoolCase:
        return self.cases[number]


Source = TableSource | GivenSource


class CaseList(Sequence[PoolCase]):
    """Cases in order, each held as a code (its source and its number there) and made when read."""

    def __init__(self, sources: Sequence[Source] = (), codes: np.ndarray | None = None) -> None:
        self._sources = list(sources)
        self._codes = np.zeros(0, np.int64) if codes is None else np.asarray(codes, np.int64)

    @classmethod
    def of(cls, cases: Iterable[PoolCase]) -> CaseList:
        """A list of given cases (no table behind them)."""
        given = GivenSource(cases)
        return cls([given], np.arange(len(given.cases), dtype=np.int64))

    @staticmethod
    def code(source: int, number: int) -> int:
        """The code of combination `number` of the list's source `source`."""
        return source << _SOURCE_SHIFT | number

    def add_source(self, source: Source) -> int:
        """Make `source` one of the list's sources (while expanding); returns its number for `code`."""
        self._sources.append(source)
        return len(self._sources) - 1

    def extend_codes(self, codes: np.ndarray) -> None:
        """Append cases by their codes (while expanding)."""
        self._codes = np.concatenate([self._codes, np.asarray(codes, np.int64)])

    def __len__(self) -> int:
        return len(self._codes)

    @overload
    def __getitem__(self, index: int) -> PoolCase: ...

    @overload
    def __getitem__(self, index: slice) -> CaseList: ...

    def __getitem__(self, index: int | slice) -> PoolCase | CaseList:
        if isinstance(index, slice):
            return CaseList(self._sources, self._codes[index])
        return self._make(int(self._codes[index]))

    def __iter__(self) -> Iterator[PoolCase]:
        for code in self._codes.tolist():
            yield self._make(code)

    def __eq__(self, other: object) -> bool:
        """Equal to a list or CaseList of the same cases in the same order (as a list would be)."""
        if not isinstance(other, (list, CaseList)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CaseList({len(self)} cases)"

    def ids(self) -> Iterator[str]:
        """Every case's id, in order."""
        return (case.id for case in self)

    def where(self, keep: Callable[[PoolCase], bool]) -> CaseList:
        """The cases for which `keep` is true, in order (still made when read)."""
        mask = np.fromiter((keep(case) for case in self), dtype=bool, count=len(self))
        return CaseList(self._sources, self._codes[mask])

    def then(self, other: CaseList | Iterable[PoolCase]) -> CaseList:
        """This list followed by the cases of `other` that it does not hold already."""
        extra = other if isinstance(other, CaseList) else CaseList.of(other)
        known = set(self.ids())
        shift = len(self._sources) << _SOURCE_SHIFT  # extra's sources come after ours
        keep: list[int] = []
        for case, code in zip(extra, extra._codes.tolist()):
            if case.id not in known:
                known.add(case.id)
                keep.append(code + shift)
        return CaseList(self._sources + extra._sources, np.concatenate([self._codes, np.asarray(keep, np.int64)]))

    def _make(self, code: int) -> PoolCase:
        return self._sources[code >> _SOURCE_SHIFT].case(code & _NUMBER_MASK)
