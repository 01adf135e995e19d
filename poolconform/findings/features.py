"""What triage may say about a case: its attributes, plus a few derived facts, as (name, value) tests.

Derived facts name the places where frameworks really differ (the last ceil_mode window,
padding), so a finding can read "the last ceil_mode window starts in the right padding"
instead of a list of kernel, stride and size values that happen to produce it.
"""

from __future__ import annotations

from typing import Any

from poolconform import shapes

Test = tuple[str, Any]

#: Attributes copied from a record's params, with how a summary says them.
_PLAIN = {
    "op": "{}",
    "rank": "{}-D",
    "dtype": "{}",
    "opset": "opset {}",
    "generator": "{} inputs",
    "auto_pad": "auto_pad {}",
    "p": "p={}",
    "storage_order": "storage_order {}",
}
_TUPLES = {"kernel": "kernel {}", "strides": "stride {}", "pads": "pads {}", "dilations": "dilation {}",
           "input": "input {}", "batch": "batch x channels {}"}
_FLAGS = {
    "ceil_mode": ("ceil_mode", "no ceil_mode"),
    "count_include_pad": ("count_include_pad", "count_include_pad=0"),
    "with_indices": ("with Indices", "without Indices"),
    "padded": ("padding", "no padding"),
    "dilated": ("dilation", "no dilation"),
    "ceil_window_in_pad": ("the last ceil_mode window starts past the input's end",
                           "no ceil_mode window starts past the input's end"),
    "ceil_window_past_pad": ("the last ceil_mode window lies wholly past the padding (it covers nothing)",
                             "no ceil_mode window lies wholly past the padding"),
}
#: Tests that explain rather than enumerate: preferred when two rules cover the same cases.
DERIVED = frozenset({"padded", "dilated", "ceil_overhang", "ceil_window_in_pad", "ceil_window_past_pad"})


def _tag(values: Any) -> str:
    values = [int(v) for v in values]
    if not values:
        return "-"
    return str(values[0]) if len(set(values)) == 1 else "x".join(str(v) for v in values)


def case_tests(params: dict[str, Any] | None) -> set[Test]:
    """Every (name, value) test that holds for the case a record's params describe."""
    if not params:
        return set()
    tests: set[Test] = {(k, params[k]) for k in _PLAIN if k in params}
    shape = [int(v) for v in params.get("input_shape") or []]
    if len(shape) >= 3:
        tests.add(("input", _tag(shape[2:])))
        tests.add(("batch", f"{shape[0]}x{shape[1]}"))
    for key in ("kernel", "strides", "dilations"):
        if params.get(key):
            tests.add((key, _tag(params[key])))
    pads = params.get("pads")
    if pads is not None:
        tests.add(("pads", _tag(pads) if len(set(pads)) <= 1 else "_".join(str(v) for v in pads)))
        tests.add(("padded", any(int(v) for v in pads)))
    if params.get("dilations"):
        tests.add(("dilated", any(int(v) != 1 for v in params["dilations"])))
    for key in ("ceil_mode", "count_include_pad"):
        if key in params:
            tests.add((key, bool(params[key])))
    tests.add(("with_indices", bool(params.get("with_indices"))))
    overhang, in_pad, empty = _ceil_windows(params, shape)
    if overhang is not None:
        # From 1: "overhangs by 0 or more" holds for every case with explicit pads, ceil_mode
        # or not, and as a derived fact it would win ties while saying nothing.
        tests |= {("ceil_overhang", t) for t in range(1, overhang + 1)}
        tests.add(("ceil_window_in_pad", in_pad))
        tests.add(("ceil_window_past_pad", empty))
    return tests


def _ceil_windows(params: dict[str, Any], shape: list[int]) -> tuple[int | None, bool, bool]:
    """(how far the last ceil_mode window reaches past the padded input, on the worst axis;
    whether that window starts past the input's end on some axis; whether it starts past the
    end padding too, covering nothing, which every rule drops).

    The ceil formula alone, before any rule drops a window: exactly where frameworks differ.
    """
    kernel = params.get("kernel")
    if not kernel or params.get("auto_pad", "NOTSET") != "NOTSET" or len(shape) < 3:
        return None, False, False
    if not params.get("ceil_mode"):
        return 0, False, False
    rank = len(shape) - 2
    pads = list(params.get("pads") or [0] * 2 * rank)
    strides = params.get("strides") or [1] * rank
    dilations = params.get("dilations") or [1] * rank
    overhang, in_pad, empty = 0, False, False
    try:
        for a in range(rank):
            n, k, s, d = shape[2 + a], int(kernel[a]), int(strides[a]), int(dilations[a])
            begin, end = int(pads[a]), int(pads[a + rank])
            span = n + begin + end - shapes.effective_kernel(k, d)
            if span < 0:
                continue
            counted = -(-span // s) + 1  # the ceil formula alone, no window dropped
            if counted > span // s + 1:  # ceil counts one window more than floor
                overhang = max(overhang, (counted - 1) * s - span)
                in_pad |= (counted - 1) * s >= n + begin
                empty |= (counted - 1) * s >= n + begin + end
    except (IndexError, TypeError, ValueError, ZeroDivisionError):
        return None, False, False
    return overhang, in_pad, empty


def phrase(test: Test) -> str:
    """How a summary says one test."""
    name, value = test
    if name == "ceil_overhang":
        more = "" if value == 1 else f" by {value} or more"
        return f"the last ceil_mode window overhangs the padded input{more}"
    if name in _FLAGS:
        return _FLAGS[name][0 if value else 1]
    if name in _TUPLES:
        return _TUPLES[name].format(value)
    return _PLAIN.get(name, name + " {}").format(value)
