"""Output files that concurrent writers never share, and the cleanup of what a killed writer left.

* Every write goes to a temporary name of its own, ``.<name>.<pid>.<random>.partial`` beside the final
  file (the pid of the writing process, 12 random hex digits), so two writers (threads, processes, or
  two servers sharing one output folder) never write into the same file.
* A finished file is published under its final name without ever replacing another file: a hard link
  that fails if the name exists (or, where the file system has no hard links, the name created
  exclusively with O_CREAT|O_EXCL and then replaced by the finished file). A folder (a PNG sequence) is
  published by creating the final folder exclusively and renaming the finished one onto it.
* Numbered outputs (``run_00001.webp`` + ``run_00001.json``) are published together: when another writer
  took the number meanwhile, the next number is tried.
* :func:`remove_stale_partials` removes temporary files of this naming pattern (and of the pack's older
  ``.<name>_NNNNN.<ext>.partial`` pattern) that are older than :data:`STALE_AFTER` and whose writer is
  not alive on this machine. Nothing else is ever touched.

Pure: standard library only.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import shutil
import threading
import time

log = logging.getLogger("animatediff")

STALE_AFTER = 3600.0  # seconds since a partial file last changed before it may be removed
MAX_NAME_BYTES = 255
PARTIAL = re.compile(r"^\.(?P<label>.+)\.(?P<pid>[1-9]\d{0,9})\.(?P<token>[0-9a-f]{12})\.partial$", re.S)
# What versions before this one left: ".<stem>_NNNNN[.<ext>].partial" (no pid).
LEGACY_PARTIAL = re.compile(r"^\.(?P<label>.+_\d{5,}(?:_preview_\d{5,})?(?:\.(?:webp|gif|png|mp4|webm|mov|json))?)"
                            r"\.partial$", re.S)

_live: set[str] = set()  # partial paths this process is writing now
_lock = threading.Lock()
_LINK_UNSUPPORTED = {errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOSYS, errno.EACCES,
                     getattr(errno, "ENOTSUP", 95), getattr(errno, "EOPNOTSUPP", 95)}


class PublishError(OSError):
    pass


# ---------------------------------------------------------------------------------------------
# Temporary names

def partial_path(folder: str, label: str) -> str:
    """A new temporary path in ``folder`` for a file to be called ``label``; registered as live in this
    process until :func:`release` (so this process's own cleanup never takes it)."""
    tail = f".{os.getpid()}.{secrets.token_hex(6)}.partial"
    budget = MAX_NAME_BYTES - len(tail.encode()) - 1
    raw = label.encode("utf-8", "surrogateescape")
    if len(raw) > budget:
        label = raw[:budget].decode("utf-8", "ignore")
    path = os.path.join(folder, f".{label}{tail}")
    with _lock:
        _live.add(os.path.abspath(path))
    return path


def release(path: str | None):
    """Forget a temporary path (written and published, or removed)."""
    if path:
        with _lock:
            _live.discard(os.path.abspath(path))


def remove(path: str | None):
    """Remove a file or folder of ours, quietly."""
    if not path:
        return
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        try:
            os.remove(path)
        except OSError:
            pass


def discard(path: str | None):
    remove(path)
    release(path)


# ---------------------------------------------------------------------------------------------
# Publishing without replacing

def publish(tmp: str, final: str) -> None:
    """Give the finished ``tmp`` (file or folder) the name ``final``; FileExistsError (``tmp`` kept) when
    ``final`` exists, whoever made it. ``tmp`` is gone afterwards."""
    if os.path.isdir(tmp) and not os.path.islink(tmp):
        os.mkdir(final)  # FileExistsError when taken: the reservation
        try:
            os.rename(tmp, final)  # onto the empty folder we just made (POSIX replaces an empty folder)
        except OSError:
            try:
                os.rmdir(final)
            except OSError:
                pass
            raise
        release(tmp)
        return
    try:
        os.link(tmp, final)  # fails with EEXIST rather than replace
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in _LINK_UNSUPPORTED:
            raise
        # No hard links here (FAT, some network file systems): reserve the name exclusively, then
        # replace our own empty reservation with the finished file.
        fd = os.open(final, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.close(fd)
        try:
            os.replace(tmp, final)
        except OSError:
            try:
                os.remove(final)
            except OSError:
                pass
            raise
    else:
        os.remove(tmp)
    release(tmp)


def numbered_name(stem: str, number: int, extension: str) -> str:
    name = f"{stem}_{number:05d}"
    return f"{name}.{extension}" if extension else name


def publish_numbered(folder: str, stem: str, parts, first: int, tries: int = 100000) -> tuple[int, list[str]]:
    """Publish ``parts`` ([(tmp path, extension), ...]) as ``{stem}_{N}.{extension}`` in ``folder``, all
    with the same N, the first N >= ``first`` for which every name is free. Returns (N, final paths)."""
    number = first
    for _ in range(tries):
        done = []
        try:
            for tmp, extension in parts:
                final = os.path.join(folder, numbered_name(stem, number, extension))
                publish(tmp, final)
                done.append((tmp, final))
            return number, [final for _, final in done]
        except FileExistsError:
            for tmp, final in reversed(done):  # undo: ours, published a moment ago
                try:
                    os.rename(final, tmp)
                except OSError:
                    remove(final)
            number += 1
    raise PublishError(errno.EEXIST, f"no free name for {stem} in {folder} after {tries} tries")


# ---------------------------------------------------------------------------------------------
# Stale partial files

def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process: live only while registered (see is_held)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, another user's
        return True
    return True


def is_held(path: str, pid: int | None) -> bool:
    """Whether a live writer on this machine may still be writing ``path``."""
    if pid is None:
        return False
    if pid == os.getpid():
        with _lock:
            return os.path.abspath(path) in _live
    return _pid_alive(pid)


def stale_partials(folder: str, max_age: float = STALE_AFTER, now: float | None = None) -> list[str]:
    """Paths in ``folder`` (not below it) of partial files of our naming patterns that are older than
    ``max_age`` seconds and not held by a live writer on this machine."""
    now = time.time() if now is None else now
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = []
    for name in names:
        if not name.endswith(".partial") or not name.startswith("."):
            continue
        m = PARTIAL.match(name)
        pid = int(m.group("pid")) if m else None
        if m is None and not LEGACY_PARTIAL.match(name):
            continue
        path = os.path.join(folder, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if os.path.islink(path):
            continue  # never ours
        if now - st.st_mtime < max_age:
            continue
        if is_held(path, pid):
            continue
        found.append(path)
    return found


def remove_stale_partials(folder: str, max_age: float = STALE_AFTER, now: float | None = None) -> list[str]:
    """Remove :func:`stale_partials`; returns what was removed."""
    removed = []
    for path in stale_partials(folder, max_age, now):
        remove(path)
        if not os.path.lexists(path):
            removed.append(path)
    if removed:
        log.info("removed %d stale partial file(s) left by interrupted writers in %s: %s", len(removed), folder,
                 ", ".join(os.path.basename(p) for p in removed))
    return removed


_cleaned: set[str] = set()


def clean_once(folder: str):
    """:func:`remove_stale_partials` for ``folder``, once per process (for folders such as the output
    root that a save does not write into every time)."""
    key = os.path.abspath(folder)
    if key in _cleaned:
        return
    _cleaned.add(key)
    try:
        remove_stale_partials(folder)
    except OSError:
        pass
