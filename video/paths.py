"""Where an output file goes: a prefix with optional subfolders and date tokens, always inside the
base folder."""

from __future__ import annotations

import datetime as _dt
import os
import re
import unicodedata

MAX_NAME_BYTES = 255   # one file or folder name, on the common file systems
MAX_STEM_BYTES = 200   # the file-name part of a prefix: room for "_00001_preview_00001.webm"
MAX_PATH_BYTES = 4000  # the whole path (PATH_MAX is 4096 on Linux)
# Categories refused in a prefix: control (Cc), format (Cf: the bidirectional overrides and isolates
# U+202A-U+202E, U+2066-U+2069, the marks U+200E/U+200F, zero-width characters, ...), lone surrogates
# (Cs) and the line/paragraph separators (Zl, Zp). They hide or reverse how a name is shown.
_REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}


class OutputPathError(ValueError):
    pass


# The tokens of the frontend's formatDate (used for %date:FORMAT%): yyyy, yy, MM, M, dd, d, hh, h
# (24-hour), mm, m, ss, s. Anything else in FORMAT is copied as it is.
_DATE_TOKEN = re.compile(r"yyyy|yy|MM?|dd?|hh?|mm?|ss?")


def format_date(fmt: str, now: _dt.datetime) -> str:
    def field(m):
        tok = m.group(0)
        if tok == "yyyy":
            return f"{now.year:04d}"
        if tok == "yy":
            return f"{now.year % 100:02d}"
        value = {"M": now.month, "d": now.day, "h": now.hour, "m": now.minute, "s": now.second}[tok[0]]
        return str(value).zfill(len(tok))
    return _DATE_TOKEN.sub(field, fmt)


def expand_tokens(prefix: str, now: _dt.datetime | None = None, width: int | None = None,
                  height: int | None = None) -> str:
    """Replace ``%date:FORMAT%`` (as the ComfyUI frontend does) and ``%year%``, ``%month%``, ``%day%``,
    ``%hour%``, ``%minute%``, ``%second%``, ``%width%``, ``%height%`` (as ComfyUI's savers do). Other
    ``%...%`` text (e.g. ``%KSampler.seed%``, which the frontend resolves) is left as it is."""
    now = now or _dt.datetime.now()
    fixed = {"year": f"{now.year:04d}", "month": f"{now.month:02d}", "day": f"{now.day:02d}",
             "hour": f"{now.hour:02d}", "minute": f"{now.minute:02d}", "second": f"{now.second:02d}"}
    if width is not None:
        fixed["width"] = str(width)
    if height is not None:
        fixed["height"] = str(height)

    def token(m):
        text = m.group(1)
        if text.startswith("date:"):
            return format_date(text[5:], now)
        return fixed.get(text, m.group(0))
    return re.sub(r"%([^%]+)%", token, prefix)


def resolve_prefix(base_dir: str, filename_prefix: str) -> tuple[str, str]:
    """(absolute folder, file-name stem) for ``filename_prefix`` like ``"AnimateDiff"`` or
    ``"clips/run1"``. Anything that would land outside ``base_dir`` is refused."""
    if not isinstance(filename_prefix, str):
        raise OutputPathError(f"filename_prefix must be text, got {type(filename_prefix).__name__}")
    prefix = filename_prefix.strip()
    if not prefix or prefix.endswith(("/", "\\")):
        raise OutputPathError(f"filename_prefix '{filename_prefix}' must end with a file name, e.g. 'AnimateDiff'")
    refused = sorted({c for c in prefix if unicodedata.category(c) in _REFUSED_CATEGORIES})
    if refused:
        names = ", ".join(f"U+{ord(c):04X}" + (f" {unicodedata.name(c)}" if unicodedata.name(c, "") else "")
                          for c in refused[:4])
        raise OutputPathError(f"filename_prefix {filename_prefix!r} contains control characters ({names}), which "
                              f"can hide or reverse how a file name is shown: remove them")
    if os.path.isabs(prefix) or re.match(r"^[A-Za-z]:", prefix) or prefix.startswith(("/", "\\")):
        raise OutputPathError(f"filename_prefix '{filename_prefix}' must be relative to the output folder")
    parts = [p for p in prefix.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    for i, part in enumerate(parts):
        size = len(part.encode("utf-8"))
        last = i == len(parts) - 1
        limit = MAX_STEM_BYTES if last else MAX_NAME_BYTES
        if size > limit:
            what = "file name" if last else "folder name"
            room = " (the rest of the 255 allowed is kept for the counter and extension)" if last else ""
            raise OutputPathError(f"filename_prefix: the {what} '{part[:40]}...' is {size} bytes long; at most "
                                  f"{limit} bytes are allowed{room}: shorten it")
    base = os.path.realpath(base_dir)
    target = os.path.realpath(os.path.join(base, prefix.replace("\\", "/")))
    if len(os.fsencode(target)) > MAX_PATH_BYTES:
        raise OutputPathError(f"filename_prefix: the path of the output ({len(os.fsencode(target))} bytes) is too "
                              f"long; at most {MAX_PATH_BYTES} bytes are allowed: use fewer or shorter folders")
    if os.path.commonpath([base, target]) != base or target == base:
        raise OutputPathError(f"filename_prefix '{filename_prefix}' leads outside the output folder {base}")
    return os.path.dirname(target), os.path.basename(target)


def next_free_name(folder: str, stem: str, extension: str) -> str:
    """``{stem}_{NNNNN}.{extension}`` (or the folder ``{stem}_{NNNNN}`` when ``extension`` is empty) with a
    counter one past the highest already used for ``stem`` by any file or folder."""
    pattern = re.compile(re.escape(stem) + r"_(\d{5,})(?:[._]|$)")
    highest = 0
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            m = pattern.match(name)
            if m:
                highest = max(highest, int(m.group(1)))
    name = f"{stem}_{highest + 1:05d}"
    return f"{name}.{extension}" if extension else name
