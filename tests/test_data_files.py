"""tests/data: the reference data is in the repository, and each file is the one its README lists."""

from __future__ import annotations

import hashlib
import os
import re

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
ROW = re.compile(r"^\| `([^`]+)` \| ([\d,]+) \| `([0-9a-f]{64})` \|$")


def listed() -> dict[str, tuple[int, str]]:
    with open(os.path.join(DATA, "README.md"), encoding="utf-8") as f:
        rows = [ROW.match(line.strip()) for line in f]
    return {m[1]: (int(m[2].replace(",", "")), m[3]) for m in rows if m}


def test_every_file_is_listed_with_its_checksum():
    table = listed()
    present = sorted(f"{folder}/{name}" for folder in ("vectors", "manifests")
                     for name in os.listdir(os.path.join(DATA, folder)))
    assert present and sorted(table) == present
    for name, (size, digest) in table.items():
        with open(os.path.join(DATA, name), "rb") as f:
            data = f.read()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (size, digest), name
