"""corese_edge.versions.parse_version: the one version parser (TensorRT versions, compute
capabilities, library versions)."""
from __future__ import annotations

import pytest

from corese_edge.versions import parse_version


@pytest.mark.parametrize("text, expected", [
    ("10.3.0.30", (10, 3, 0, 30)),         # a TensorRT version with its build number
    ("8.6", (8, 6)),                       # a compute capability
    (8.7, (8, 7)),                         # a number is read as its text
    ("  11.4.0.106\n", (11, 4, 0, 106)),   # surrounding whitespace is ignored
    ("10.0.0b6", (10, 0, 0)),              # a pre-release suffix ends the version ...
    ("8.6.1.post1", (8, 6, 1)),            # ... and so does a part that is not a number
    ("1.2rc1.3", (1, 2)),                  # nothing after a suffixed part is read
    ("10.x", (10,)),
    ("", ()),
    ("unknown", ()),
    ("v10.3", ()),                         # no leading number: no version
])
def test_parse_version(text, expected):
    assert parse_version(text) == expected


def test_versions_compare_as_numbers_not_as_text():
    assert parse_version("12.1") > parse_version("8.7") and "12.1" < "8.7"
    assert parse_version("10.13.0.35") > parse_version("10.3.0.30")
    assert parse_version("unknown") < parse_version("0")  # () is lower than every real version
    assert parse_version("8.7") >= (8, 0) and parse_version("7.5") < (8, 0)
