"""Animated images (WebP, GIF, APNG) and PNG sequences, written one frame at a time with Pillow.

Pillow's own animated savers want every frame at once; here each frame is compressed alone by
Pillow's still-image encoder and its compressed data is placed into the animation container, which
is written here chunk by chunk. Peak memory is one frame whatever the frame count. Pure: no ComfyUI
import, no PyAV.
"""

from __future__ import annotations

import io
import math
import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import metadata as md


class EncodeError(RuntimeError):
    """An encode failed; the message names the file and the problem."""


@dataclass
class StreamInfo:
    width: int
    height: int
    alpha: bool
    frame_rate: float
    total: int            # frames that will be added
    loop_count: int = 0   # 0 forever; N plays N more times after the first


def boundary(index: int, frame_rate: float, units_per_second: int) -> int:
    """Start of frame ``index`` in whole units, rounded, so durations add up to the exact length."""
    return int(math.floor(index * units_per_second / frame_rate + 0.5))


def frame_duration(index: int, frame_rate: float, units_per_second: int, minimum: int = 1) -> int:
    d = boundary(index + 1, frame_rate, units_per_second) - boundary(index, frame_rate, units_per_second)
    return max(minimum, d)


def _image(rgb: np.ndarray) -> Image.Image:
    return Image.fromarray(rgb, "RGBA" if rgb.shape[-1] == 4 else "RGB")


class _FileWriter:
    def __init__(self, path: str, info: StreamInfo):
        self.path = path
        self.info = info
        self.index = 0
        self.f = open(path, "wb")

    def abort(self):
        if self.f and not self.f.closed:
            self.f.close()


# ---------------------------------------------------------------------------------------------
# WebP

def _riff_chunks(data: bytes):
    """(fourcc, payload) of each chunk of a RIFF/WEBP file."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise EncodeError("Pillow did not produce a WebP bitstream")
    pos = 12
    while pos + 8 <= len(data):
        kind = data[pos:pos + 4]
        size = struct.unpack("<I", data[pos + 4:pos + 8])[0]
        yield kind, data[pos + 8:pos + 8 + size]
        pos += 8 + size + (size & 1)


def _riff_chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload + (b"\0" if len(payload) & 1 else b"")


def _u24(value: int) -> bytes:
    return struct.pack("<I", value)[:3]


class WebPWriter(_FileWriter):
    """RIFF/WEBP with VP8X + ANIM, one full-canvas ANMF per frame, EXIF at the end; the RIFF size is
    patched on close."""

    def __init__(self, path, info, lossless=False, quality=90, metadata=None, method=4):
        super().__init__(path, info)
        if info.width > 16384 or info.height > 16384:
            raise EncodeError(f"WebP frames can be at most 16383 pixels wide and high, got {info.width}x{info.height}")
        self.lossless = bool(lossless)
        self.quality = int(quality)
        self.method = method
        self.exif = md.webp_exif(metadata)
        flags = 0x02  # animation
        if info.alpha:
            flags |= 0x10
        if self.exif:
            flags |= 0x08
        self.f.write(b"RIFF\0\0\0\0WEBP")
        self.f.write(_riff_chunk(b"VP8X", bytes([flags, 0, 0, 0]) + _u24(info.width - 1) + _u24(info.height - 1)))
        # WebP counts total plays (0 = forever); loop_count counts repeats after the first play.
        loops = 0 if info.loop_count == 0 else min(info.loop_count + 1, 0xFFFF)
        self.f.write(_riff_chunk(b"ANIM", b"\0\0\0\0" + struct.pack("<H", loops)))

    def add(self, rgb: np.ndarray):
        buf = io.BytesIO()
        _image(rgb).save(buf, format="WEBP", lossless=self.lossless, quality=self.quality, method=self.method,
                         exact=self.lossless)
        frame_chunks = b"".join(_riff_chunk(k, p) for k, p in _riff_chunks(buf.getvalue())
                                if k in (b"ALPH", b"VP8 ", b"VP8L"))
        duration = min(frame_duration(self.index, self.info.frame_rate, 1000), 0xFFFFFF)
        header = (_u24(0) + _u24(0) + _u24(self.info.width - 1) + _u24(self.info.height - 1)
                  + _u24(duration) + bytes([0x02]))  # no blending: every frame covers the canvas
        self.f.write(_riff_chunk(b"ANMF", header + frame_chunks))
        self.index += 1

    def close(self):
        if self.exif:
            self.f.write(_riff_chunk(b"EXIF", self.exif))
        size = self.f.tell()
        self.f.seek(4)
        self.f.write(struct.pack("<I", size - 8))
        self.f.close()


# ---------------------------------------------------------------------------------------------
# GIF

def _gif_blocks(data: bytes):
    """(local colour table flag bits, colour table, LZW data incl. min code size and terminator) of the
    first image of a GIF that Pillow wrote."""
    packed = data[10]
    pos = 13
    table = b""
    size_bits = 0
    if packed & 0x80:
        size_bits = packed & 0x07
        n = 3 * (2 << size_bits)
        table = data[pos:pos + n]
        pos += n
    while pos < len(data):
        marker = data[pos]
        if marker == 0x21:  # extension: skip its sub-blocks
            pos += 2
            while data[pos]:
                pos += data[pos] + 1
            pos += 1
        elif marker == 0x2C:
            descriptor = data[pos:pos + 10]
            local = descriptor[9]
            pos += 10
            if local & 0x80:
                size_bits = local & 0x07
                n = 3 * (2 << size_bits)
                table = data[pos:pos + n]
                pos += n
            start = pos
            pos += 1  # LZW minimum code size
            while data[pos]:
                pos += data[pos] + 1
            pos += 1
            return size_bits, table, data[start:pos]
        else:
            break
    raise EncodeError("Pillow did not produce a GIF image block")


def _sub_blocks(payload: bytes) -> bytes:
    out = bytearray()
    for i in range(0, len(payload), 255):
        part = payload[i:i + 255]
        out += bytes([len(part)]) + part
    return bytes(out + b"\0")


class GifWriter(_FileWriter):
    """GIF89a: every frame with its own palette (median cut, Floyd-Steinberg dithering); with alpha, pixels
    under half opacity become the transparent palette entry 255."""

    TRANSPARENT = 255

    def __init__(self, path, info, metadata=None):
        super().__init__(path, info)
        if info.width > 0xFFFF or info.height > 0xFFFF:
            raise EncodeError(f"GIF frames can be at most 65535 pixels wide and high, got {info.width}x{info.height}")
        self.f.write(b"GIF89a" + struct.pack("<HHBBB", info.width, info.height, 0, 0, 0))
        # NETSCAPE2.0: 0 = forever, N = repeat N times after the first play.
        self.f.write(b"\x21\xFF\x0BNETSCAPE2.0\x03\x01" + struct.pack("<H", min(info.loop_count, 0xFFFF)) + b"\0")
        comment = md.gif_comment(metadata)
        if comment:
            self.f.write(b"\x21\xFE" + _sub_blocks(comment))

    PALETTE_SAMPLE = 128 * 128  # pixels the palette is chosen from (a box-filtered copy of larger frames)

    def _palette(self, image: Image.Image, colours: int) -> Image.Image:
        """Median-cut palette of ``colours`` entries; the unused entries repeat the first colour."""
        w, h = image.size
        small = image
        if w * h > self.PALETTE_SAMPLE:
            f = math.sqrt(w * h / self.PALETTE_SAMPLE)
            small = image.resize((max(1, round(w / f)), max(1, round(h / f))), Image.Resampling.BOX)
        chosen = small.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        used = len(chosen.getcolors(256) or []) or colours
        entries = (chosen.getpalette() or [0, 0, 0])[:3 * used]
        entries += entries[:3] * (256 - len(entries) // 3)
        palette = Image.new("P", (1, 1))
        palette.putpalette(entries[:768])
        return palette

    def add(self, rgb: np.ndarray):
        alpha = rgb[..., 3] if rgb.shape[-1] == 4 else None
        colours = 255 if alpha is not None else 256
        image = Image.fromarray(np.ascontiguousarray(rgb[..., :3]), "RGB")
        palette = self._palette(image, colours)
        # Floyd-Steinberg dithering onto the frame's palette: no banding on gradients, no colour drift.
        indexed = image.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG)
        extra = {}
        if alpha is not None:
            idx = np.array(indexed)
            idx[idx == self.TRANSPARENT] = 0  # entry 255 only repeats entry 0 here
            idx[alpha < 128] = self.TRANSPARENT
            entries = palette.getpalette()[:3 * 255] + [0, 0, 0]
            indexed = Image.fromarray(idx, "P")
            indexed.putpalette(entries)
            extra["transparency"] = self.TRANSPARENT
        buf = io.BytesIO()
        indexed.save(buf, format="GIF", optimize=False, interlace=False, **extra)
        size_bits, table, lzw = _gif_blocks(buf.getvalue())
        # GIF delays are in 1/100 s; browsers slow anything under 2/100 s down to 1/10 s.
        delay = min(frame_duration(self.index, self.info.frame_rate, 100, minimum=2), 0xFFFF)
        disposal = 2 if alpha is not None else 1  # restore to background / leave in place
        packed = (disposal << 2) | (1 if alpha is not None else 0)
        self.f.write(b"\x21\xF9\x04" + struct.pack("<BHB", packed, delay, self.TRANSPARENT if alpha is not None else 0)
                     + b"\0")
        self.f.write(b"\x2C" + struct.pack("<HHHH", 0, 0, self.info.width, self.info.height)
                     + bytes([0x80 | size_bits]) + table + lzw)
        self.index += 1

    def close(self):
        self.f.write(b"\x3B")
        self.f.close()


# ---------------------------------------------------------------------------------------------
# PNG

def _png_chunks(data: bytes):
    pos = 8
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        yield kind, data[pos + 8:pos + 8 + size]
        pos += 12 + size


def _png_idat(image: Image.Image, compress_level: int) -> tuple[bytes, bytes]:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=compress_level)
    ihdr, idat = b"", []
    for kind, payload in _png_chunks(buf.getvalue()):
        if kind == b"IHDR":
            ihdr = payload
        elif kind == b"IDAT":
            idat.append(payload)
    return ihdr, b"".join(idat)


def _fraction(frame_rate: float) -> tuple[int, int]:
    """Frame duration as num/den seconds, both fitting 16 bits (APNG's fcTL)."""
    from fractions import Fraction
    f = (1 / Fraction(frame_rate)).limit_denominator(0xFFFF)
    while f.numerator > 0xFFFF:
        f = f.limit_denominator(max(1, f.denominator // 2))
    return f.numerator, f.denominator


class ApngWriter(_FileWriter):
    """APNG: IHDR, acTL (frame count known up front), tEXt metadata, then fcTL + IDAT / fdAT per frame."""

    def __init__(self, path, info, metadata=None, compress_level=4):
        super().__init__(path, info)
        self.compress_level = compress_level
        self.sequence = 0
        self.delay = _fraction(info.frame_rate)
        self.f.write(b"\x89PNG\r\n\x1a\n")
        colour_type = 6 if info.alpha else 2
        self.f.write(md.png_chunk(b"IHDR", struct.pack(">IIBBBBB", info.width, info.height, 8, colour_type, 0, 0, 0)))
        # APNG counts total plays (0 = forever).
        plays = 0 if info.loop_count == 0 else min(info.loop_count + 1, 0xFFFFFFFF)
        self.f.write(md.png_chunk(b"acTL", struct.pack(">II", info.total, plays)))
        for key, text in md.png_text_chunks(metadata):
            self.f.write(md.png_text_chunk(key, text))

    def add(self, rgb: np.ndarray):
        if rgb.shape[-1] == 3 and self.info.alpha:
            rgb = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)
        elif rgb.shape[-1] == 4 and not self.info.alpha:
            rgb = np.ascontiguousarray(rgb[..., :3])
        _, data = _png_idat(_image(rgb), self.compress_level)
        fctl = struct.pack(">IIIIIHHBB", self.sequence, self.info.width, self.info.height, 0, 0,
                           self.delay[0], self.delay[1], 0, 0)
        self.f.write(md.png_chunk(b"fcTL", fctl))
        self.sequence += 1
        if self.index == 0:
            self.f.write(md.png_chunk(b"IDAT", data))
        else:
            self.f.write(md.png_chunk(b"fdAT", struct.pack(">I", self.sequence) + data))
            self.sequence += 1
        self.index += 1

    def close(self):
        if self.index != self.info.total:
            raise EncodeError(f"APNG announced {self.info.total} frames but got {self.index}")
        self.f.write(md.png_chunk(b"IEND", b""))
        self.f.close()


class PngSequenceWriter:
    """A folder of frame_00001.png, frame_00002.png, ..., each with the prompt and workflow tEXt chunks."""

    def __init__(self, path, info, metadata=None, compress_level=4):
        self.path = path
        self.info = info
        self.index = 0
        self.compress_level = compress_level
        self.text = md.png_text_chunks(metadata)
        os.makedirs(path, exist_ok=False)

    @staticmethod
    def frame_name(index: int) -> str:
        return f"frame_{index + 1:05d}.png"

    def add(self, rgb: np.ndarray):
        from PIL.PngImagePlugin import PngInfo
        info = PngInfo()
        for key, text in self.text:
            info.add_text(key, text)
        _image(rgb).save(os.path.join(self.path, self.frame_name(self.index)), format="PNG", pnginfo=info,
                         compress_level=self.compress_level)
        self.index += 1

    def close(self):
        pass

    def abort(self):
        pass
