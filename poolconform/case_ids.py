"""Case ids read back: any valid case id is a complete description of its case.

`parse_case_id("MaxPool-2d-k3-s2-p1-ceil-f32-n7")` gives the validated PoolCase whose `id`
is exactly that text. The grammar is the one `PoolCase.id` writes, token by token, from the
same attribute table (poolconform/attributes.py); docs/conformance-space.md spells it out:

    OP-<rank>d[-k<K>-s<S>-(p<P>|valid|sameupper|samelower)[-d<D>][-ceil][-cip]][-L<p>]
      [-idx|-idxcol|-col][-q<xs>_<xz>_<ys>_<yz>][-pad[-edge|-reflect]|-dyn|-unpool[-oshape]]
      -<dtype>-n<N>[-b<N>c<C>][-o<opset>][-g<generator>]
    AdaptiveAveragePool|AdaptiveMaxPool-<rank>d-os<O>-<dtype>-n<N>[-b<N>c<C>][-o<opset>][-g<generator>]
"""

from __future__ import annotations

import difflib
import re

from poolconform.attributes import ALL_OPS, ATTRIBUTES, CHOICE_TOKENS, GLUED, Attribute, read_token
from poolconform.case import DEFAULT_GENERATOR, DTYPE_TAGS, ID_IMPLICIT_OPSET, PoolCase
from poolconform.errors import CaseError
from poolconform.validation import validate_case

_TAG_DTYPES = {tag: dtype for dtype, tag in DTYPE_TAGS.items()}
_UNGLUED = {glued: pair for pair, glued in GLUED.items()}
_NUMBER = r"(?:0|[1-9][0-9]*)"
#: Longest id read: far above any real id, so a pasted file is refused in one line.
MAX_ID_LENGTH = 400


def _shown(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _expected(row: Attribute) -> str:
    """How an id writes the row, for messages."""
    if row.kind == "choice":
        return "|".join(CHOICE_TOKENS[row.name].values())
    return {"axes": f"{row.tag}<N>", "pads": f"{row.tag}<N>", "auto_pad": "valid|sameupper|samelower",
            "flag": row.tag, "int": row.tag if row.name == "storage_order" else f"{row.tag}<N>",
            "quant": "q<x_scale>_<x_zero>_<y_scale>_<y_zero>"}[row.kind]


def parse_case_id(text: str) -> PoolCase:
    """The validated case an id describes; CaseError naming the first bad token otherwise."""
    if len(text) > MAX_ID_LENGTH:
        raise CaseError(f"case id {_shown(text)} is {len(text)} characters, longer than any case id")
    tokens = text.split("-")
    where = f"case id {_shown(text)}"

    def bad(token: str | None, expected: list[str], why: str = "") -> CaseError:
        if token is None:
            return CaseError(f"{where} ends where {' or '.join(expected)} should follow{why}")
        return CaseError(f"{where}: token {_shown(token)} is not {' or '.join(expected)}{why}")

    op = tokens[0]
    if op not in ALL_OPS:
        close = difflib.get_close_matches(op, ALL_OPS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise CaseError(f"{where}: {_shown(op)} is not an op{hint}; allowed: {', '.join(ALL_OPS)}")
    rest = [t for token in tokens[1:] for t in _UNGLUED.get(token, (token,))]
    m = re.fullmatch(rf"({_NUMBER})d", rest[0]) if rest else None
    if not m:
        raise bad(rest[0] if rest else None, ["the rank (1d, 2d or 3d)"])
    rank = int(m.group(1))
    if not 1 <= rank <= 3:
        raise bad(rest[0], ["the rank (1d, 2d or 3d)"])
    fields: dict[str, object] = {"op": op}
    i = 1
    skipped: list[str] = []
    for row in ATTRIBUTES:
        if op not in row.ops:
            continue
        if row.name == "pads" and fields.get("auto_pad", "NOTSET") != "NOTSET":
            continue  # auto_pad stands for the pads
        value = read_token(row, rest[i], rank) if i < len(rest) else None
        if value is not None:
            fields[row.name] = value
            i += 1
            skipped = []
        elif row.in_id == "always" and not (row.name == "pads" and "auto_pad" in fields):
            raise bad(rest[i] if i < len(rest) else None, skipped + [_expected(row)], f" ({row.name} of {op})")
        else:
            skipped.append(_expected(row))
    dtype = _TAG_DTYPES.get(rest[i]) if i < len(rest) else None
    if dtype is None:
        token = rest[i] if i < len(rest) else None
        foreign = [r for r in ATTRIBUTES if op not in r.ops and read_token(r, token or "", rank) is not None]
        why = f" ({op} has no {foreign[0].name})" if foreign else ""
        raise bad(token, skipped + [f"a dtype ({', '.join(_TAG_DTYPES)})"], why)
    fields["dtype"] = dtype
    i += 1
    m = re.fullmatch(rf"n({_NUMBER}(?:x{_NUMBER})*)", rest[i]) if i < len(rest) else None
    if not m:
        raise bad(rest[i] if i < len(rest) else None, ["the spatial input size n<N>"])
    spatial = tuple(int(v) for v in m.group(1).split("x"))
    spatial = spatial * rank if len(spatial) == 1 else spatial
    i += 1
    batch, channels = 1, 1
    if i < len(rest) and (m := re.fullmatch(rf"b({_NUMBER})c({_NUMBER})", rest[i])):
        batch, channels = int(m.group(1)), int(m.group(2))
        i += 1
    fields["input_shape"] = (batch, channels, *spatial)
    fields["opset"] = ID_IMPLICIT_OPSET
    if i < len(rest) and (m := re.fullmatch(rf"o({_NUMBER})", rest[i])):
        fields["opset"] = int(m.group(1))
        i += 1
    fields["generator"] = DEFAULT_GENERATOR
    if i < len(rest) and (m := re.fullmatch(r"g([a-z0-9_]+)", rest[i])):
        fields["generator"] = m.group(1)
        i += 1
    if i < len(rest):
        raise bad(rest[i], ["b<N>c<C>", "o<opset>", "g<generator>"], " (or not in this place)")
    if len(spatial) != rank:
        raise CaseError(f"{where}: n{'x'.join(map(str, spatial))} has {len(spatial)} sizes for a {rank}d case")
    for row in ATTRIBUTES:
        if row.kind in ("axes", "pads") and op in row.ops:
            fields.setdefault(row.name, (row.default,) * (2 * rank if row.kind == "pads" else rank))
    case = PoolCase(**fields)  # type: ignore[arg-type]
    try:
        validate_case(case)
    except CaseError as exc:
        raise CaseError(f"{where} is not a valid case: {exc}", category=exc.category) from None
    if case.id != text:
        raise CaseError(f"{where} is written {case.id!r}: one case, one id")
    return case


def looks_like_case_id(text: str) -> bool:
    """Whether the text starts like an id (an op and a rank), so a parse error is worth showing."""
    head = text.split("-", 2)
    return len(head) >= 2 and head[0] in ALL_OPS and re.fullmatch(r"[0-9]+d", head[1]) is not None
