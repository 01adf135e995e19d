"""Text from records made safe for a report: names and messages may hold control characters.

A folder name such as `a\\x1b[2Jb` must neither drive the terminal nor make junit.xml
invalid XML, so every report shows such characters as visible escapes.
"""

from __future__ import annotations

import re

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ufffe\uffff\u2028\u2029]")


def printable(value: object) -> str:
    """`value` as text with control characters written as `\\xNN` / `\\uNNNN` escapes."""
    text = "" if value is None else str(value)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text)
