"""Frames -> one file (or folder) on disk, atomically, with metadata and a sidecar. Pure: no ComfyUI
import; the node passes the host's folders, a decode function and a progress callback."""

from __future__ import annotations

import json
import logging
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from . import formats as fmt
from . import outputs
from .animated import (ApngWriter, EncodeError, GifWriter, PngSequenceWriter, StreamInfo, WebPWriter)
from .codec_options import CodecOptionError, check_codec_options
from .frames import FrameError, check_frame_rate, check_loop_count, frame_order
from .paths import OutputPathError, expand_tokens, next_free_name, resolve_prefix

log = logging.getLogger("animatediff")

DEFAULTS = {"crf": 19, "preset": "medium", "pix_fmt": "auto", "quality": 90, "lossless": False,
            "codec_options": ""}


@dataclass
class SaveResult:
    path: str                 # the file (or folder, for a PNG sequence)
    sidecar: str | None       # the .json beside it (None when metadata is off)
    spec: fmt.FormatSpec
    frames: int               # frames written
    preview: str | None = None  # an animated WebP preview for formats browsers cannot play
    files: list = field(default_factory=list)  # the PNG sequence's frame files


# ---------------------------------------------------------------------------------------------
# Validation

def check_options(spec: fmt.FormatSpec, options: dict | None) -> dict:
    """Merge ``options`` over the defaults; refuse unknown names and out-of-range values for this format.
    Options that exist but do not apply to ``spec`` are ignored (the node always sends every widget)."""
    options = dict(options or {})
    unknown = sorted(k for k in options if k not in fmt.OPTION_NAMES)
    if unknown:
        raise EncodeError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} for "
                          f"{spec.name}; the options are {', '.join(fmt.OPTION_NAMES)}")
    merged = {**DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    if "crf" in spec.options:
        crf = merged["crf"]
        lo, hi = spec.crf_range
        if isinstance(crf, bool) or not isinstance(crf, (int, np.integer)) or not lo <= crf <= hi:
            raise EncodeError(f"crf {crf!r} is out of range for {spec.name} ({spec.codec}): use {lo}..{hi}, "
                              f"lower is better quality")
    if "preset" in spec.options and merged["preset"] not in fmt.PRESETS:
        raise EncodeError(f"preset {merged['preset']!r} is not one of {', '.join(fmt.PRESETS)}")
    if "quality" in spec.options:
        q = merged["quality"]
        if isinstance(q, bool) or not isinstance(q, (int, np.integer, float)) or not 0 <= q <= 100:
            raise EncodeError(f"quality {q!r} is out of range for {spec.name}: use 0..100")
    if "pix_fmt" in spec.options:
        allowed = spec.pix_fmts + ((spec.alpha_pix_fmt,) if spec.alpha_pix_fmt else ())
        if merged["pix_fmt"] != "auto" and merged["pix_fmt"] not in allowed:
            raise EncodeError(f"pix_fmt {merged['pix_fmt']!r} is not available for {spec.name}; choose auto or one "
                              f"of {', '.join(allowed)}")
    if merged["codec_options"] and "codec_options" not in spec.options:
        raise EncodeError(f"codec_options ({merged['codec_options']!r}) are for the video formats; {spec.name} is "
                          f"written with Pillow and takes none")
    if "codec_options" in spec.options:
        try:  # the allow-list: options that name files (stats, csv, passlogfile, ...) never reach FFmpeg
            merged["codec_options"] = check_codec_options(spec.codec, merged["codec_options"])
        except CodecOptionError as e:
            raise EncodeError(str(e)) from None
    return merged


def get_spec(format_name: str) -> fmt.FormatSpec:
    spec = fmt.FORMATS.get(format_name)
    if spec is None:
        if format_name in fmt.UNAVAILABLE or (not fmt.HAVE_AV and str(format_name).startswith("video/")):
            why = ("PyAV is not installed (pip install av)" if not fmt.HAVE_AV
                   else "this FFmpeg build has no encoder for it")
            raise EncodeError(f"format '{format_name}' is not available here: {why}")
        raise EncodeError(f"unknown format '{format_name}'; choose one of {', '.join(fmt.FORMATS)}")
    return spec


def choose_pix_fmt(spec: fmt.FormatSpec, requested: str, alpha: bool) -> str:
    if requested and requested != "auto":
        return requested
    if alpha and spec.alpha_pix_fmt:
        return spec.alpha_pix_fmt
    if alpha:
        log.info("%s cannot carry transparency: the alpha channel is dropped", spec.name)
    return spec.pix_fmts[0]


def audio_to_array(audio):
    """The host's AUDIO ({"waveform": [B, C, samples], "sample_rate": int}) -> (float32 (C, S), rate)."""
    if audio is None:
        return None
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise EncodeError("audio must be the AUDIO dict {'waveform': tensor [batch, channels, samples], "
                          "'sample_rate': int}")
    wave = audio["waveform"]
    if hasattr(wave, "detach"):
        wave = wave.detach().to("cpu").float().numpy()
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 3:
        if wave.shape[0] > 1:
            log.info("audio batch of %d clips: the first one is used", wave.shape[0])
        wave = wave[0]
    if wave.ndim == 1:
        wave = wave[None]
    if wave.ndim != 2 or wave.shape[0] == 0:
        raise EncodeError(f"audio waveform must be shaped [batch, channels, samples], got {tuple(np.shape(audio['waveform']))}")
    rate = audio["sample_rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise EncodeError(f"audio sample_rate must be a positive whole number, got {rate!r}")
    return np.nan_to_num(wave), int(rate)


# ---------------------------------------------------------------------------------------------
# Atomic writes

def partial_name(path: str) -> str:
    """A new temporary name beside ``path``, of this writer alone (see ``outputs``)."""
    return outputs.partial_path(os.path.dirname(path), os.path.basename(path))


def _remove(path: str):
    outputs.remove(path)


def make_folders(folder: str, what: str | None = None) -> list[str]:
    """Create ``folder`` (and its parents); returns the folders made, innermost first, so that a failed
    write can remove them again. An OSError becomes an ``OutputPathError`` that names ``what`` (e.g.
    "filename_prefix 'clips/run'") or the folder, and says what to do."""
    created = []
    probe = folder
    while probe and not os.path.isdir(probe):
        created.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        _remove_folders(created)
        raise OutputPathError(folder_error(folder, e, what)) from None
    return created


def folder_error(folder: str, error: OSError, what: str | None = None) -> str:
    import errno as _errno
    advice = {
        _errno.ENAMETOOLONG: "a folder or file name is too long (at most 255 bytes each, 4096 for the whole "
                             "path): use a shorter filename_prefix",
        _errno.EACCES: "the server may not write there: check the folder's permissions or choose another "
                       "filename_prefix",
        _errno.EPERM: "the server may not write there: check the folder's permissions or choose another "
                      "filename_prefix",
        _errno.EROFS: "the file system is read-only: point ComfyUI's output folder somewhere writable",
        _errno.ENOSPC: "the disk is full: free some space",
        _errno.EDQUOT: "the disk quota is used up: free some space",
        _errno.ENOTDIR: "a file of that name is in the way of the folder: choose another filename_prefix",
        _errno.EEXIST: "a file of that name is in the way of the folder: choose another filename_prefix",
    }.get(error.errno, "choose another filename_prefix or check the output folder")
    subject = f"{what}: " if what else ""
    return f"{subject}cannot create the folder {folder} ({_describe(error)}): {advice}"


def _remove_folders(created):
    for made in created:  # innermost first
        try:
            os.rmdir(made)
        except OSError:
            break


@contextmanager
def atomic_output(path: str):
    """Yield a temporary path (file or folder) beside ``path``, of this writer alone; move it into place
    only if the block succeeds (replacing a file already called ``path``: the caller chose that name;
    :func:`save` never replaces). On failure nothing is left under either name."""
    folder = os.path.dirname(path)
    created = make_folders(folder)
    tmp = partial_name(path)
    try:
        yield tmp
        if os.path.isdir(path) and not os.path.islink(path):
            raise EncodeError(f"{path} is an existing folder; nothing was replaced")
        os.replace(tmp, path)  # atomic
    except BaseException:
        _remove(tmp)
        _remove_folders(created)
        raise
    finally:
        outputs.release(tmp)


def write_sidecar(path: str, metadata: dict | None):
    with atomic_output(path) as tmp:
        _write_json(tmp, metadata)


def _write_json(path: str, metadata: dict | None):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(metadata or {}, f, indent=1)


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.errno and error.strerror:
        import errno as _errno
        code = _errno.errorcode.get(error.errno, str(error.errno))
        return f"{error.strerror} ({code})"
    text = str(error).strip() or type(error).__name__
    return text


# ---------------------------------------------------------------------------------------------
# Writing

def make_writer(tmp: str, spec: fmt.FormatSpec, info: StreamInfo, options: dict, metadata, audio, pix_fmt):
    if spec.name == "image/webp":
        return WebPWriter(tmp, info, lossless=options["lossless"], quality=options["quality"], metadata=metadata)
    if spec.name == "image/gif":
        return GifWriter(tmp, info, metadata=metadata)
    if spec.name == "image/apng":
        return ApngWriter(tmp, info, metadata=metadata)
    if spec.name == "image/png-sequence":
        return PngSequenceWriter(tmp, info, metadata=metadata)
    from .av_video import AvWriter
    crf = options["crf"] if "crf" in spec.options else None
    return AvWriter(tmp, spec, info, pix_fmt, crf=crf, preset=options["preset"],
                    codec_options=options["codec_options"], metadata=metadata, audio=audio)


def sidecar_path(path: str, spec: fmt.FormatSpec) -> str:
    return (path if spec.is_sequence else os.path.splitext(path)[0]) + ".json"


_NUMBERED = re.compile(r"^(?P<stem>.+)_(?P<number>\d{5,})$")


def encode(source, path: str, format_name: str, frame_rate: float, loop_count: int = 0, pingpong: bool = False,
           metadata: dict | None = None, options: dict | None = None, audio=None, progress=None,
           preview_path: str | None = None, numbered: bool = False) -> SaveResult:
    """Write ``source`` (``frames.ImageFrames`` / ``frames.LatentFrames``) to ``path``.

    ``metadata`` (prompt, workflow, ...) is embedded and written to a ``.json`` sidecar; ``None`` writes
    neither. ``progress(done, total)`` is called after each frame; whatever it raises (an interruption) stops
    the encode and propagates unchanged. Any failure of the encode itself raises ``EncodeError`` naming
    the file. Either way nothing is left under ``path``, and no temporary file.

    Everything is written to temporary names of this writer alone and moved into place at the end.
    ``numbered`` (``path`` is ``{stem}_{NNNNN}.{ext}``, as :func:`save` picks it): the file, its sidecar and
    its preview never replace anything; when another writer has taken that number meanwhile, the next
    free one is used (the result's ``path`` says which). Otherwise an existing file at ``path`` is
    replaced."""
    spec = get_spec(format_name)
    try:
        rate = check_frame_rate(frame_rate)
        loops = check_loop_count(loop_count)
    except FrameError as e:
        raise EncodeError(str(e)) from None
    opts = check_options(spec, options)
    audio_data = audio_to_array(audio) if spec.is_video else None
    if audio is not None and not spec.is_video:
        log.info("%s carries no sound: the audio input is not written", spec.name)
    pix_fmt = choose_pix_fmt(spec, opts["pix_fmt"], source.has_alpha) if spec.is_video else None
    stem_match = _NUMBERED.match(os.path.splitext(os.path.basename(path))[0] if not spec.is_sequence
                                 else os.path.basename(path)) if numbered else None
    if numbered and stem_match is None:
        raise ValueError(f"numbered output {path} is not named {{stem}}_{{NNNNN}}")

    # Video players do not loop by themselves: loop_count N writes the frames N + 1 times there.
    plays = loops + 1 if spec.is_video else 1
    order = frame_order(source.count, pingpong, plays)
    alpha = source.has_alpha and (spec.alpha if not spec.is_video else bool(pix_fmt and "yuva" in pix_fmt))
    info = StreamInfo(source.width, source.height, alpha, rate, len(order), loops)

    folder = os.path.dirname(path)
    created = make_folders(folder)
    try:
        preview_created = make_folders(os.path.dirname(preview_path)) if preview_path else []
    except BaseException:
        _remove_folders(created)
        raise
    tmp = partial_name(path)
    preview_tmp = partial_name(preview_path) if preview_path else None
    sidecar = sidecar_path(path, spec) if metadata is not None else None  # None: --disable-metadata
    sidecar_tmp = None
    published = []
    writer = preview_writer = None
    try:
        try:
            writer = make_writer(tmp, spec, info, opts, metadata, audio_data, pix_fmt)
            if preview_tmp:
                p_info = StreamInfo(source.width, source.height, source.has_alpha, rate, len(order), 0)
                preview_writer = WebPWriter(preview_tmp, p_info, quality=80, method=0)
        except (EncodeError, OSError, ValueError, RuntimeError) as e:
            raise EncodeError(f"could not write {path}: {_describe(e)}") from e
        done = 0
        for index in order:
            rgb = source.frame(index)
            try:
                writer.add(rgb)
                if preview_writer:
                    preview_writer.add(rgb)
            except Exception as e:
                raise EncodeError(f"could not write {path}: {_describe(e)}") from e
            done += 1
            if progress is not None:
                progress(done, len(order))
        try:
            writer.close()
            if preview_writer:
                preview_writer.close()
        except Exception as e:
            raise EncodeError(f"could not write {path}: {_describe(e)}") from e
        writer = preview_writer = None
        if sidecar:
            sidecar_tmp = partial_name(sidecar)
            try:
                _write_json(sidecar_tmp, metadata)
            except OSError as e:
                raise EncodeError(f"could not write {sidecar}: {_describe(e)}") from e

        # Into place.
        try:
            if numbered:
                stem, first = stem_match.group("stem"), int(stem_match.group("number"))
                parts = [(tmp, spec.extension)] + ([(sidecar_tmp, "json")] if sidecar_tmp else [])
                number, finals = outputs.publish_numbered(folder, stem, parts, first)
                published += finals
                path = finals[0]
                sidecar = finals[1] if sidecar_tmp else None
                if preview_tmp:
                    p_folder = os.path.dirname(preview_path)
                    p_stem = f"{outputs.numbered_name(stem, number, '')}_preview"
                    p_first = int(next_free_name(p_folder, p_stem, "webp")[len(p_stem) + 1:].split(".")[0])
                    _, (preview_path,) = outputs.publish_numbered(p_folder, p_stem, [(preview_tmp, "webp")],
                                                                  p_first)
            else:
                if os.path.isdir(path) and not os.path.islink(path) and not spec.is_sequence:
                    raise EncodeError(f"{path} is an existing folder; nothing was replaced")
                os.replace(tmp, path)
                published.append(path)
                if sidecar_tmp:
                    os.replace(sidecar_tmp, sidecar)
                    published.append(sidecar)
                if preview_tmp:
                    os.replace(preview_tmp, preview_path)
        except OSError as e:
            raise EncodeError(f"could not write {path}: {_describe(e)}") from e
    except BaseException:
        for w in (writer, preview_writer):
            if w is not None:
                w.abort()
        for p in published:
            _remove(p)
        for p in (tmp, preview_tmp, sidecar_tmp):
            outputs.discard(p)
        _remove_folders(created)
        _remove_folders(preview_created)
        raise
    finally:
        for p in (tmp, preview_tmp, sidecar_tmp):
            outputs.release(p)
    files = []
    if spec.is_sequence:
        files = [os.path.join(path, PngSequenceWriter.frame_name(i)) for i in range(len(order))]
    return SaveResult(path, sidecar, spec, len(order), preview_path, files)


def output_path(base_dir: str, filename_prefix: str, spec: fmt.FormatSpec, width: int | None = None,
                height: int | None = None, now=None) -> str:
    """The next free ``{prefix}_{NNNNN}.{ext}`` under ``base_dir`` (date tokens expanded). Only a first
    guess when writers run concurrently: :func:`save` takes the next number if another writer got there
    first."""
    prefix = expand_tokens(filename_prefix, now=now, width=width, height=height)
    folder, stem = resolve_prefix(base_dir, prefix)
    return os.path.join(folder, next_free_name(folder, stem, spec.extension))


def check_prefix(base_dir: str, filename_prefix: str, now=None) -> tuple[str, str]:
    """Refuse a ``filename_prefix`` that cannot be used (outside ``base_dir``, control characters, names
    too long) before anything is decoded or encoded; (folder, stem) with %width%/%height% as 99999."""
    prefix = expand_tokens(filename_prefix, now=now, width=99999, height=99999)
    return resolve_prefix(base_dir, prefix)


def save(source, base_dir: str, filename_prefix: str, format_name: str, frame_rate: float, loop_count: int = 0,
         pingpong: bool = False, metadata: dict | None = None, options: dict | None = None, audio=None,
         progress=None, preview_dir: str | None = None, now=None) -> SaveResult:
    """Pick the next free name under ``base_dir`` and :func:`encode` there, never replacing a file (two
    writers sharing the folder get different numbers). Formats a browser cannot play (ProRes, H.265)
    also get an animated WebP preview in ``preview_dir``. Stale partial files that killed writers left
    in these folders are removed first (``outputs.remove_stale_partials``)."""
    spec = get_spec(format_name)
    path = output_path(base_dir, filename_prefix, spec, source.width, source.height, now)
    folder = os.path.dirname(path)
    outputs.clean_once(base_dir)
    outputs.remove_stale_partials(folder)
    preview = None
    if preview_dir and spec.is_video and not spec.browser_playable:
        outputs.clean_once(preview_dir)
        stem = os.path.splitext(os.path.basename(path))[0]
        preview = os.path.join(preview_dir, next_free_name(preview_dir, f"{stem}_preview", "webp"))
    try:
        return encode(source, path, format_name, frame_rate, loop_count, pingpong, metadata, options, audio,
                      progress, preview, numbered=True)
    except OutputPathError as e:
        raise OutputPathError(f"filename_prefix {filename_prefix!r}: {e}") from None


def ui_item(path: str, base_dir: str, kind: str) -> dict:
    folder = os.path.dirname(os.path.realpath(path))
    sub = os.path.relpath(folder, os.path.realpath(base_dir))
    return {"filename": os.path.basename(path), "subfolder": "" if sub == "." else sub.replace(os.sep, "/"),
            "type": kind}


def ui_for(result: SaveResult, base_dir: str, kind: str, preview_base: str | None = None) -> dict:
    """The node's ``ui`` value: what the stock frontend shows natively goes under ``images``; GIF and
    browser-playable videos go under ``animatediff_preview`` for this pack's web extension (current
    frontends route an animated GIF to a <video> element, which cannot play it)."""
    spec = result.spec
    if spec.is_sequence:
        return {"images": [ui_item(f, base_dir, kind) for f in result.files]}
    item = ui_item(result.path, base_dir, kind)
    if spec.name in ("image/webp", "image/apng"):
        return {"images": [item], "animated": (True,)}
    if result.preview:
        return {"images": [ui_item(result.preview, preview_base, "temp")], "animated": (True,)}
    media = "image" if spec.name == "image/gif" else "video"
    mime = {"gif": "image/gif", "mp4": "video/mp4", "webm": "video/webm", "mov": "video/quicktime"}[spec.extension]
    return {"animatediff_preview": [{**item, "format": spec.name, "media": media, "mime": mime}]}
