"""Readers for the video tests: decode written files back (PyAV, and Pillow for WebP, which FFmpeg
cannot decode when animated) and read the embedded metadata the way the ComfyUI frontend does.

No tests here; the test_video_*.py modules import these helpers.
"""

from __future__ import annotations

import json
import os
import struct
from fractions import Fraction

import numpy as np
from PIL import Image, ImageSequence

try:
    import av
    from av.video.reformatter import Interpolation
except ImportError:  # the Pillow-only tests still run
    av = None

PROMPT = {"3": {"class_type": "KSampler", "inputs": {"seed": 1, "cfg": 7.5, "text": "ünïcödé ✓ \"quoted\" {braces}"}},
          "9": {"class_type": "VideoCombine", "inputs": {"frame_rate": 8.0}}}
WORKFLOW = {"last_node_id": 9, "nodes": [{"id": 9, "type": "VideoCombine", "widgets_values": [8.0, 0, "x"]}],
            "links": [], "extra": {"note": "a } in a string, and a \\ backslash"}, "version": 0.4}
METADATA = {"prompt": PROMPT, "workflow": WORKFLOW}


def make_pattern(frames: int = 8, height: int = 64, width: int = 64, alpha: bool = False) -> np.ndarray:
    """Coloured ramps (red across, green down, blue along the diagonal, moving per frame) with four
    skin-tone patches; floats in [0, 1], (frames, height, width, 3|4)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.zeros((frames, height, width, 4 if alpha else 3), np.float32)
    skins = [(0.94, 0.76, 0.64), (0.80, 0.59, 0.46), (0.55, 0.38, 0.26), (0.36, 0.22, 0.15)]
    for i in range(frames):
        f = out[i]
        f[..., 0] = x / (width - 1)
        f[..., 1] = y / (height - 1)
        f[..., 2] = np.clip((x + y) / (width + height - 2) * 0.8 + 0.1 + 0.01 * i, 0, 1)
        ph, pw = max(2, height // 8), max(2, width // 4)
        for k, tone in enumerate(skins):
            top = (height // 8) + k * (height // 5)
            f[top:top + ph, width // 2:width // 2 + pw, :3] = tone
        if alpha:
            f[..., 3] = 1.0
            f[: height // 4, : width // 4, 3] = 0.0  # a transparent corner
    return out


# ---------------------------------------------------------------------------------------------
# Decoding

def decode_av(path: str):
    """(frames as uint8 RGB[A], pts in seconds, stream) through FFmpeg's decoders. Y'CbCr frames are
    converted with the matrix and range the stream is tagged with, accurately rounded."""
    frames, times = [], []
    with av.open(path) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            name = frame.format.name
            if name.startswith(("yuv", "nv")):
                flags = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
                rgb = frame.reformat(format="rgba" if "yuva" in name else "rgb24", src_colorspace=frame.colorspace,
                                     src_color_range=frame.color_range, dst_color_range="JPEG",
                                     interpolation=flags).to_ndarray()
            else:
                rgb = frame.to_ndarray(format="rgba" if "a" in name.replace("rgb", "") else "rgb24")
            frames.append(rgb)
            times.append(float(frame.pts * frame.time_base) if frame.pts is not None else None)
        info = {"codec": stream.codec_context.name, "pix_fmt": stream.codec_context.pix_fmt,
                "colorspace": stream.codec_context.colorspace, "color_range": stream.codec_context.color_range,
                "color_primaries": stream.codec_context.color_primaries,
                "color_trc": stream.codec_context.color_trc, "width": stream.codec_context.width,
                "height": stream.codec_context.height, "metadata": dict(container.metadata),
                "audio": [dict(rate=a.rate, channels=a.channels, codec=a.codec_context.name,
                               duration=float(a.duration * a.time_base) if a.duration else None)
                          for a in container.streams.audio]}
    return np.stack(frames), times, info


def decode_pillow(path: str):
    """(frames as uint8 RGB[A], per-frame durations in ms, image info) through Pillow."""
    image = Image.open(path)
    frames, durations = [], []
    for frame in ImageSequence.Iterator(image):
        mode = "RGBA" if frame.mode in ("RGBA", "LA") or "transparency" in frame.info else "RGB"
        frames.append(np.asarray(frame.convert(mode)))
        durations.append(frame.info.get("duration"))
    return np.stack(frames), durations, dict(image.info)


def decode_any(path: str):
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.endswith(".png"))
        return np.stack([np.asarray(Image.open(os.path.join(path, n))) for n in names])
    if path.endswith(".webp"):
        return decode_pillow(path)[0]
    return decode_av(path)[0]


# ---------------------------------------------------------------------------------------------
# Metadata, read as the ComfyUI frontend reads it (src/scripts/metadata/*.ts), written anew here

def _u32(data: bytes, pos: int) -> int:
    return struct.unpack(">I", data[pos:pos + 4])[0] if pos + 4 <= len(data) else 0


def _find_box(data: bytes, start: int, end: int, kind: bytes):
    """First box of ``kind`` among the boxes between start and end: (content start, box end)."""
    pos = start
    while pos + 8 <= end:
        size = _u32(data, pos)
        if size < 8:
            return None
        if data[pos + 4:pos + 8] == kind:
            return pos + 8, pos + size
        if pos + size > end:
            return None
        pos += size
    return None


def isobmff_metadata(data: bytes) -> dict:
    """MP4/MOV: udta (top level, else inside moov) -> meta -> keys + ilst; the values of the keys
    "prompt" and "workflow" (case-insensitive) parsed as JSON from their first '{'."""
    udta = _find_box(data, 0, len(data), b"udta")
    if udta is None:
        moov = _find_box(data, 0, len(data), b"moov")
        udta = moov and _find_box(data, moov[0], moov[1], b"udta")
    if not udta:
        return {}
    meta = _find_box(data, udta[0], udta[1], b"meta")
    if not meta:
        return {}
    keys_box = _find_box(data, meta[0] + 4, meta[1], b"keys")
    ilst = _find_box(data, meta[0] + 4, meta[1], b"ilst")
    if not keys_box or not ilst:
        return {}
    keys, pos = {}, keys_box[0] + 8
    for i in range(1, _u32(data, keys_box[0] + 4) + 1):
        size = _u32(data, pos)
        keys[i] = data[pos + 8:pos + size].decode("utf-8")
        pos += size
    out, pos = {}, ilst[0]
    while pos + 8 <= ilst[1]:
        size = _u32(data, pos)
        name = keys.get(_u32(data, pos + 4))
        box = _find_box(data, pos + 8, pos + size, b"data")
        if name and box and name.lower() in ("prompt", "workflow"):
            value = data[box[0] + 8:box[1]]
            out[name.lower()] = json.loads(value[value.index(b"{"):].decode("utf-8"))
        pos += size
    return out


def _vint(data: bytes, pos: int):
    first = data[pos]
    length = next(i for i in range(1, 9) if first & (0x80 >> (i - 1)))
    value = first & (0xFF >> length)
    for b in data[pos + 1:pos + length]:
        value = (value << 8) | b
    return value, length


def webm_metadata(data: bytes, limit: int = 2 * 1024 * 1024) -> dict:
    """WebM: every SimpleTag (0x67C8) in the first 2 MiB; TagName (0x45A3) "PROMPT"/"WORKFLOW" (exact case,
    as the frontend compares) -> TagString (0x4487) parsed as JSON."""
    data = data[:limit]
    assert data[:4] == b"\x1a\x45\xdf\xa3", "not an EBML file"
    out, pos = {}, 0
    while pos < len(data) - 2:
        if data[pos:pos + 2] != b"\x67\xc8":
            pos += 1
            continue
        try:  # a SimpleTag, or two bytes of compressed data that look like its ID: skip those
            size, n = _vint(data, pos + 2)
            start, end = pos + 2 + n, pos + 2 + n + size
            if size <= 0 or end > len(data):
                raise ValueError
            fields, p = {}, start
            while p < end:
                ident = data[p:p + 2]
                fsize, fn = _vint(data, p + 2)
                fields[ident] = data[p + 2 + fn:p + 2 + fn + fsize]
                p += 2 + fn + fsize
            name = fields.get(b"\x45\xa3", b"").decode("utf-8")
        except (ValueError, IndexError, StopIteration, UnicodeDecodeError):
            pos += 1
            continue
        if name in ("PROMPT", "WORKFLOW"):
            out[name.lower()] = json.loads(fields[b"\x44\x87"].decode("utf-8").rstrip("\0"))
        pos = end
    return out


def png_metadata(path: str) -> dict:
    """tEXt / iTXt chunks "prompt" and "workflow" (what the frontend's getPngMetadata reads)."""
    data = open(path, "rb").read()
    out, pos = {}, 8
    while pos + 8 <= len(data):
        size = _u32(data, pos)
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + size]
        if kind == b"tEXt":
            key, _, text = body.partition(b"\0")
            out[key.decode("latin-1")] = json.loads(text.decode("latin-1"))
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\0")
            text = rest[2:].split(b"\0", 2)[2]
            out[key.decode("latin-1")] = json.loads(text.decode("utf-8"))
        pos += 12 + size
    return out


def webp_metadata(path: str) -> dict:
    """EXIF chunk: each string value "key:json" (the frontend splits at the first ':')."""
    exif = Image.open(path).getexif()
    out = {}
    for value in exif.values():
        if isinstance(value, str) and ":" in value:
            key, _, text = value.partition(":")
            out[key] = json.loads(text)
    return out


def gif_metadata(path: str) -> dict:
    data = open(path, "rb").read()
    pos = data.index(b"\x21\xfe") + 2
    text = b""
    while data[pos]:
        text += data[pos + 1:pos + 1 + data[pos]]
        pos += data[pos] + 1
    return json.loads(text.decode("utf-8"))


def embedded_metadata(path: str) -> dict:
    if os.path.isdir(path):
        first = sorted(n for n in os.listdir(path) if n.endswith(".png"))[0]
        return png_metadata(os.path.join(path, first))
    ext = path.rsplit(".", 1)[-1]
    if ext == "png":
        return png_metadata(path)
    if ext == "webp":
        return webp_metadata(path)
    if ext == "gif":
        return gif_metadata(path)
    data = open(path, "rb").read()
    if ext in ("mp4", "mov"):
        return isobmff_metadata(data)
    if ext == "webm":
        return webm_metadata(data)
    raise ValueError(path)


def fraction(value) -> Fraction:
    return Fraction(value).limit_denominator(1_000_000)
