"""Triage: many disagreeing records become a few findings, one per behaviour of one backend.

Records of one backend with one status and one signature (a normalised error message, a
kind of mismatch, the direction a shape is off) are the positives; that backend's passing
records are the negatives. A small rule induction (sequential covering, each rule the
conjunction of at most four attribute tests that covers the most positives and no
negative) splits the positives into findings and says what each one's cases share.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from poolconform.findings.features import DERIVED, Test, case_tests, phrase
from poolconform.results import FAILING, Record, numeric

#: Rules sought per behaviour (backend, status, signature); its records left after that many
#: make one finding. Disagreements without a pattern (a backend wrong on scattered cases)
#: would otherwise cost a full rule search per record: 2,475 of them took minutes.
MAX_RULES = 12
#: Longest conjunction tried, and how many tests the longest ones combine (the rest are rare).
MAX_TESTS = 4
WIDE_SEARCH = {3: 40, 4: 22}

_HEX = re.compile(r"0x[0-9a-fA-F]+")
_NUMBER_LIST = re.compile(r"[(\[]\s*[-+]?\d+(?:\s*,\s*[-+]?\d+)*\s*,?\s*[)\]]")
_NUMBER = re.compile(r"(?<![A-Za-z_#])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def normalise_message(text: str) -> str:
    """A framework message with its numbers and shapes replaced by #, so errors group."""
    text = _HEX.sub("#", text or "")
    text = _NUMBER_LIST.sub("(#)", text)
    text = _NUMBER.sub("#", text)
    text = " ".join(text.split())
    return text if len(text) <= 160 else text[:159] + "…"


#: Mismatch kinds whose size ULP measure (an expectation's max_ulp may excuse them); NaN
#: handling, a dtype, an empty window or an output count are wrong whatever their ULP.
VALUE_KINDS = ("values differ", "16-bit accumulation")


def mismatch_kind(detail: str) -> str:
    """Which wrong answer a mismatch is (NaN handling, dtype, empty window, or values)."""
    head = detail.split(":", 1)[0]
    if head.startswith("NaN "):
        return head
    lowered = detail.lower()
    if "dtype" in lowered:
        return "wrong output dtype"
    if "for an empty window" in lowered:
        return "value for an empty window"
    if "16-bit" in lowered or "accumulat" in lowered:
        return "16-bit accumulation"
    if "output(s), expected" in lowered:
        return "wrong number of outputs"
    return "values differ"


def _shape_delta(record: Record | _Member) -> list[int] | None:
    want, got = record.get("expected_shape"), record.get("actual_shape")
    if not want or not got or len(want) != len(got):
        return None
    return [int(g) - int(w) for w, g in zip(want, got)]


def signature(record: Record) -> str:
    """What separates behaviours of one backend and status before any attribute is looked at."""
    status = record["status"]
    if status == "mismatch":
        return mismatch_kind(record.get("detail") or "")
    if status == "shape-mismatch":
        delta = _shape_delta(record)
        if delta is None:
            return "output rank differs"
        if all(d >= 0 for d in delta):
            return "output shape too large"
        if all(d <= 0 for d in delta):
            return "output shape too small"
        return "output shape differs"
    return normalise_message(record.get("detail") or status)


def _what(status: str, sig: str, members: list[_Member]) -> str:
    """The first half of a summary: what the backend does wrong."""
    if status == "shape-mismatch":
        deltas = sorted({abs(d) for r in members for d in (_shape_delta(r) or []) if d})
        if deltas and sig != "output rank differs":
            by = str(deltas[0]) if len(deltas) == 1 else f"{deltas[0]}-{deltas[-1]}"
            return sig.replace("too large", "larger").replace("too small", "smaller") + f" by {by}"
        return sig
    if status == "mismatch":
        ulps = [u for u in (numeric(r.get("max_ulp")) for r in members) if u is not None and math.isfinite(u)]
        if sig == "values differ" and ulps:
            return f"values differ (up to {max(ulps):.3g} ULP)"
        return sig
    return f"{status}: {sig}"


def smallest_first(record: Record) -> tuple:
    """Order members so the cheapest case to read comes first."""
    params = record.get("params") or {}
    size = math.prod(int(v) for v in params.get("input_shape") or [10**9])
    window = math.prod(int(v) for v in params.get("kernel") or [1])
    return (size, window, len(record["case"]), record["case"])


class Vocabulary:
    """Every attribute test seen in one triage, each a bit: a case's facts are then one int
    (tens of bytes) instead of a frozenset (up to 2 KB a case), which a broken backend's
    tens of thousands of disagreeing records each need."""

    def __init__(self) -> None:
        self._bits: dict[Test, int] = {}
        self._tests: list[Test] = []

    def encode(self, tests: Iterable[Test]) -> int:
        bits = 0
        for test in tests:
            bit = self._bits.get(test)
            if bit is None:
                bit = self._bits[test] = len(self._tests)
                self._tests.append(test)
            bits |= 1 << bit
        return bits

    def bit(self, test: Test) -> int:
        return self._bits[test]

    def decode(self, bits: int) -> list[Test]:
        out, tests = [], self._tests
        while bits:
            low = bits & -bits
            out.append(tests[low.bit_length() - 1])
            bits ^= low
        return out


def _mask(items: Sequence[int], bit: int) -> int:
    """Bit i set where the facts items[i] hold test `bit` (built in one pass: or-ing 1 << i
    into a large int would copy it once per item)."""
    bits = bytearray((len(items) + 7) // 8)
    for i, facts in enumerate(items):
        if facts >> bit & 1:
            bits[i >> 3] |= 1 << (i & 7)
    return int.from_bytes(bits, "little")


class Negatives:
    """A backend's passing cases as distinct fact sets (a rule must cover none of them; how
    many records share a set does not matter), with each test's mask over them made once
    for every rule searched. 80,000 records of 10,000 cases: one set per case, not per record."""

    def __init__(self) -> None:
        self._index: dict[int, None] = {}
        self._sets: list[int] | None = None
        self._masks: dict[int, int] = {}

    def add(self, facts: int) -> None:
        self._index[facts] = None
        self._sets = None
        self._masks.clear()

    def __len__(self) -> int:
        return len(self._index)

    def mask(self, bit: int) -> int:
        if self._sets is None:
            self._sets = list(self._index)
        mask = self._masks.get(bit)
        if mask is None:
            mask = self._masks[bit] = _mask(self._sets, bit)
        return mask


def induce_rule(positives: Sequence[int], negatives: Negatives, remaining: int,
                vocabulary: Vocabulary) -> tuple[list[Test], int] | None:
    """The conjunction covering the most `remaining` positives and no negative (None if none);
    facts are `vocabulary`'s bits.

    Ties go to fewer tests, then to derived facts that hold (they explain; one that does not
    hold, such as "no ceil_mode window ...", says little), then to a stable order.
    """
    if not len(negatives):
        return [], remaining
    any_fact = 0
    for i, facts in enumerate(positives):
        if remaining >> i & 1:
            any_fact |= facts
    seen = vocabulary.decode(any_fact)
    pos = {t: _mask(positives, vocabulary.bit(t)) & remaining for t in seen}
    neg = {t: negatives.mask(vocabulary.bit(t)) for t in seen}
    tests = sorted(seen, key=lambda t: (-pos[t].bit_count(), str(t)))
    all_neg = (1 << len(negatives)) - 1
    best: tuple | None = None
    for size in range(1, MAX_TESTS + 1):
        pool = tests[:WIDE_SEARCH[size]] if size in WIDE_SEARCH else tests
        for combo in itertools.combinations(pool, size):
            covered, negs = remaining, all_neg
            for t in combo:
                covered &= pos[t]
                negs &= neg[t]
                if not covered:
                    break
            if not covered or negs or len({name for name, _ in combo}) < size:
                continue  # (two values of one attribute cover nothing together: checked last)
            count = covered.bit_count()
            if best is not None and (-count, size) > best[0][:2]:
                continue  # cannot win: the rest of the key only breaks ties
            key = (-count, size, -sum(n in DERIVED and bool(v) for n, v in combo), sorted(map(str, combo)))
            if best is None or key < best[0]:
                best = (key, list(combo), covered)
        if best is not None and best[0][0] == -remaining.bit_count():
            break  # nothing longer can cover more
    return None if best is None else (best[1], best[2])


def _finding(backend: str, status: str, sig: str, rule: list[Test] | None, members: list[_Member],
             unsplit: bool = False) -> dict[str, Any]:
    # unexpected records first: the minimal case (and what shrinking starts from) is one that
    # fails the run, not one an expectation excuses
    members = sorted(members, key=lambda r: (bool(r.get("expected")), r.order))
    if rule is None:
        pattern = [f"{len(members)} more case(s), not split into more than {MAX_RULES} patterns" if unsplit
                   else f"{len(members)} case(s) that share no pattern apart from passing ones"]
        where = "in " + pattern[0]
    else:
        pattern = [phrase(t) for t in sorted(rule, key=lambda t: (t[0] not in ("op",), t[0] in DERIVED, str(t)))]
        where = "when " + ", ".join(pattern) if pattern else "in every case it ran"
    expected = [r for r in members if r.get("expected")]
    finding: dict[str, Any] = {
        "backend": backend,
        "status": status,
        "count": len(members),
        "summary": f"{backend}: {_what(status, sig, members)} {where}",
        "signature": sig,
        "pattern": pattern,
        "rule": [[name, value] for name, value in (rule or [])],
        "cases": [r["case"] for r in members],
        "minimal_case": members[0]["case"],
        "minimal_detail": members[0].get("detail") or "",
        "shrunk": False,
        "expected": bool(members) and len(expected) == len(members),
        "unexpected": len(members) - len(expected),
    }
    if status == "mismatch" and sig in VALUE_KINDS:
        ulps = [numeric(r.get("max_ulp")) for r in members]
        if ulps and not any((r.get("detail") or "").startswith("Indices") for r in members) \
                and all(u is not None and math.isfinite(u) for u in ulps):
            finding["max_ulp"] = max(u for u in ulps if u is not None)  # what its expect entry pins
    for key in ("suite", "path"):  # check: where the minimal case's directory is (--onnx-suite, or a path)
        if members and members[0].get(key):
            finding[key] = members[0][key]
    if members and members[0].get("path") and members[0].get("expected_from") == "stored":
        finding["against"] = "stored"  # check --against stored judged it: its reproduce line says so
        for key in ("stored_atol", "stored_rtol"):  # and within the --atol/--rtol it was given
            if members[0].get(key) is not None:
                finding[key] = members[0][key]
    reasons = sorted({r["expected_reason"] for r in expected if r.get("expected_reason")})
    links = sorted({r["expected_link"] for r in expected if r.get("expected_link")})
    if reasons:
        finding["expected_reason"] = reasons[0]
    if links:
        finding["link"] = links[0]
    return finding


#: Params dicts whose facts _FactsOf keeps (a case's records are read back near each other).
_FACTS_KEPT = 4096


class _FactsOf:
    """case_tests of a params dict as vocabulary bits, computed once per dict: records read
    back share one params dict per case (poolconform/record_table.py), so 8 backends cost one
    computation."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary
        self._known: dict[int, tuple[Any, int]] = {}

    def __call__(self, params: Any) -> int:
        known = self._known.get(id(params))
        if known is None or known[0] is not params:
            if len(self._known) >= _FACTS_KEPT:  # a spilled table's chunks bring fresh dicts: keep the recent ones
                self._known.clear()
            known = self._known[id(params)] = (params, self.vocabulary.encode(case_tests(params)))
        return known[1]


class _Member:
    """What a finding reads of one disagreeing record, and its facts: a broken backend's
    records are all disagreements, and a run's records are read back from a file, so each
    is kept as this, not as the record (docs/speed.md, "Memory as the matrix grows")."""

    __slots__ = ("values", "order", "facts")
    KEYS = ("case", "status", "detail", "max_ulp", "expected_shape", "actual_shape", "expected", "expected_reason",
            "expected_link", "suite", "path", "expected_from", "stored_atol", "stored_rtol")
    _AT = {key: i for i, key in enumerate(KEYS)}

    def __init__(self, record: Record, facts: int) -> None:
        self.values = tuple(record.get(k) for k in self.KEYS)  # a tuple: a dict would cost 4x
        self.order = smallest_first(record)
        self.facts = facts

    def __getitem__(self, key: str) -> Any:
        value = self.values[self._AT[key]]
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = self.values[self._AT[key]]
        return default if value is None else value


def triage(records: Sequence[Record]) -> list[dict[str, Any]]:
    """Findings for every disagreeing record (expected ones too, marked), worst first."""
    groups: dict[tuple[str, str, str], list[_Member]] = defaultdict(list)
    vocabulary = Vocabulary()
    facts = _FactsOf(vocabulary)
    for r in records:
        if r["status"] in FAILING:
            groups[(r["backend"], r["status"], signature(r))].append(_Member(r, facts(r.get("params"))))
    passing: dict[str, Negatives] = defaultdict(Negatives)
    failing = {backend for backend, _, _ in groups}
    for r in records if failing else ():  # a second pass, for the backends that need negatives only
        if r["status"] == "pass" and r["backend"] in failing:
            passing[r["backend"]].add(facts(r.get("params")))
    findings = []
    for (backend, status, sig), members in groups.items():
        tests = [m.facts for m in members]
        remaining = (1 << len(members)) - 1
        rules = 0
        while remaining:
            found = induce_rule(tests, passing[backend], remaining, vocabulary) if rules < MAX_RULES else None
            if found is None:
                left = [m for i, m in enumerate(members) if remaining >> i & 1]
                findings.append(_finding(backend, status, sig, None, left, unsplit=rules >= MAX_RULES))
                break
            rules += 1
            rule, covered = found
            findings.append(_finding(backend, status, sig, rule,
                                     [m for i, m in enumerate(members) if covered >> i & 1]))
            remaining &= ~covered
    findings.sort(key=lambda f: (f["expected"], -f["unexpected"], -f["count"], f["backend"], f["summary"]))
    return findings


def unsupported_groups(records: Sequence[Record]) -> list[dict[str, Any]]:
    """Unsupported records grouped by backend and reason template, most records first."""
    groups: dict[tuple[str, str], list[tuple[tuple, str]]] = defaultdict(list)  # (order, detail), not the records
    for r in records:
        if r["status"] == "unsupported":
            detail = r.get("detail") or ""
            groups[(r["backend"], normalise_message(detail or "unsupported"))].append((smallest_first(r), detail))
    out = []
    for (backend, template), members in groups.items():
        members.sort()
        out.append({"backend": backend, "status": "unsupported", "count": len(members), "reason": template,
                    "summary": f"{backend}: unsupported: {template}", "cases": [order[-1] for order, _ in members],
                    "minimal_case": members[0][0][-1], "minimal_detail": members[0][1], "expected": False})
    out.sort(key=lambda g: (-g["count"], g["backend"], g["reason"]))
    return out
