"""The one version parser: TensorRT versions, CUDA compute capabilities, library versions.

Base layer: imports nothing from corese-edge, so the builder, the runner and the environment
report compare versions the same way.
"""
from __future__ import annotations

import re

_LEADING_DIGITS = re.compile(r"\d+")


def parse_version(text: object) -> tuple[int, ...]:
    """The leading dot-separated numbers of ``text``: ``"10.3.0.30"`` -> ``(10, 3, 0, 30)``.

    Parsing stops at the first part that does not start with a digit, and after a part with a
    suffix (``"10.0.0b6"`` -> ``(10, 0, 0)``, ``"8.6.1.post1"`` -> ``(8, 6, 1)``), so a pre-release
    tag never reads as one more version number.  Text with no leading number gives ``()``, which
    compares lower than every real version; callers that need a minimum length check it.
    """
    out: list[int] = []
    for part in str(text).strip().split("."):
        m = _LEADING_DIGITS.match(part)
        if m is None:
            break
        out.append(int(m.group()))
        if m.end() != len(part):
            break
    return tuple(out)
