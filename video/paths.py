"""Where an output file goes: a prefix with optional subfolders, always inside the base folder."""

from __future__ import annotations

import os
import re


class OutputPathError(ValueError):
    pass


def resolve_prefix(base_dir: str, filename_prefix: str) -> tuple[str, str]:
    """(absolute folder, file-name stem) for ``filename_prefix`` like ``"AnimateDiff"`` or
    ``"clips/run1"``. Anything that would land outside ``base_dir`` is refused."""
    prefix = (filename_prefix or "").strip()
    if not prefix or prefix.endswith(("/", "\\")):
        raise OutputPathError(f"filename_prefix '{filename_prefix}' must end with a file name, e.g. 'AnimateDiff'")
    if os.path.isabs(prefix) or re.match(r"^[A-Za-z]:", prefix):
        raise OutputPathError(f"filename_prefix '{filename_prefix}' must be relative to the output folder")
    base = os.path.realpath(base_dir)
    target = os.path.realpath(os.path.join(base, prefix))
    if os.path.commonpath([base, target]) != base or target == base:
        raise OutputPathError(f"filename_prefix '{filename_prefix}' leads outside the output folder {base}")
    return os.path.dirname(target), os.path.basename(target)


def next_free_name(folder: str, stem: str, extension: str) -> str:
    """``{stem}_{NNNNN}.{extension}`` with a counter one past the highest already used for ``stem``."""
    pattern = re.compile(re.escape(stem) + r"_(\d{5,})[._]")
    highest = 0
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            m = pattern.match(name)
            if m:
                highest = max(highest, int(m.group(1)))
    return f"{stem}_{highest + 1:05d}.{extension}"
