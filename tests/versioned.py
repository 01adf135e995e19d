"""Findings that pin a framework's behaviour, keyed by the version ranges where it was observed.

A framework release may change what a finding pins. The test then says which finding changed in
which version, instead of a bare assertion; a version below every known range asks for a row.

    behaviour = known_behaviour("SAME with stride > kernel", "onnxruntime",
                                {("1.21", "1.30"): "accepts", ("1.30", None): "refuses"})
    with pinned_finding("SAME with stride > kernel", "onnxruntime", behaviour):
        ...  # assert what `behaviour` says
"""

from __future__ import annotations

import contextlib
import importlib.metadata
from collections.abc import Iterator, Mapping
from typing import TypeVar

import pytest
from packaging.version import Version

T = TypeVar("T")

#: (lowest version, first version past the range or None for open-ended) -> what the framework does.
VersionTable = Mapping[tuple[str, "str | None"], T]


def installed_version(package: str) -> Version:
    """The installed distribution's version, local tags dropped ('2.13.0+cpu' -> 2.13.0)."""
    return Version(Version(importlib.metadata.version(package)).base_version)


def known_behaviour(finding: str, package: str, table: VersionTable) -> T:
    """The behaviour the table records for the installed `package`; fails clearly outside every range."""
    version = installed_version(package)
    for (low, high), behaviour in table.items():
        if Version(low) <= version and (high is None or version < Version(high)):
            return behaviour
    ranges = ", ".join(f"[{low}, {high or '...'})" for low, high in table)
    pytest.fail(f"finding {finding!r}: {package} {version} is outside the known ranges ({ranges}); "
                f"check what it does and add a row to the findings table", pytrace=False)


@contextlib.contextmanager
def pinned_finding(finding: str, package: str, behaviour: object) -> Iterator[None]:
    """Turns an assertion about a pinned behaviour into 'finding X changed in PACKAGE V'."""
    try:
        yield
    except (AssertionError, pytest.fail.Exception) as exc:
        version = installed_version(package)
        pytest.fail(f"finding {finding!r} changed in {package} {version} (the table says {behaviour!r} "
                    f"for this version): update the findings table and docs/refusals.md\n{exc}", pytrace=False)


# ---- the findings table: one row per pinned framework behaviour ---------------------------------

#: MaxPool SAME with a stride longer than the window: the spec's pad is negative. ORT 1.30 refuses
#: the model; older releases crop by the negative pad, as ORT's AveragePool still does.
ORT_SAME_NEGATIVE_PAD = ("SAME with stride > kernel", "onnxruntime",
                         {("1.21", "1.30"): "crops", ("1.30", None): "refuses"})

#: AveragePool count_include_pad in 2-D and 3-D with unequal pads (SAME_UPPER's included): ORT
#: before 1.25 divides by a window that leaves some padding out (x, not x/2, for one element
#: and a window of two over one pad).
ORT_UNEQUAL_PADS_COUNTED = ("count_include_pad with unequal pads", "onnxruntime",
                            {("1.21", "1.25"): "pad left out", ("1.25", None): "pad counted"})
