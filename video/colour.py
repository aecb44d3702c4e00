"""RGB -> Y'CbCr with the BT.709 matrix, limited ("TV") range, done here rather than left to a scaler
whose defaults differ between FFmpeg builds. Pure numpy, one frame at a time.

The streams are tagged BT.709 (matrix, primaries, transfer) and limited range, so a player converts
back with the same matrix. Chroma is subsampled with the H.264/HEVC default siting ("left": co-sited
with the even luma columns, between the two luma rows), i.e. a [1, 2, 1] / 4 horizontal filter centred
on the even columns and a 2-tap vertical average.
"""

from __future__ import annotations

import numpy as np

KR, KB = 0.2126, 0.0722
KG = 1.0 - KR - KB

# FFmpeg enum values (libavutil/pixfmt.h), written into the codec context and the frames.
AVCOL_PRI_BT709 = 1
AVCOL_TRC_BT709 = 1
AVCOL_SPC_BT709 = 1
AVCOL_RANGE_MPEG = 1  # limited / TV range

# pix_fmt -> (bits, horizontal subsampling, vertical subsampling, has alpha)
PIX_FMT_LAYOUT = {
    "yuv420p": (8, 2, 2, False),
    "yuva420p": (8, 2, 2, True),
    "yuv422p": (8, 2, 1, False),
    "yuv444p": (8, 1, 1, False),
    "yuva444p": (8, 1, 1, True),
    "yuv420p10le": (10, 2, 2, False),
    "yuv422p10le": (10, 2, 1, False),
    "yuv444p10le": (10, 1, 1, False),
    "yuva444p10le": (10, 1, 1, True),
}


def padded_size(width: int, height: int, pix_fmt: str) -> tuple[int, int]:
    """Subsampled formats need even sizes: odd ones are padded by repeating the last row/column."""
    _, sx, sy, _ = PIX_FMT_LAYOUT[pix_fmt]
    return width + (width % sx), height + (height % sy)


def _pad_to(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if (w, h) == (width, height):
        return rgb
    return np.pad(rgb, ((0, height - h), (0, width - w), (0, 0)), mode="edge")


def _subsample_h(c: np.ndarray) -> np.ndarray:
    """[1, 2, 1] / 4 at the even columns (edges repeated)."""
    left = np.concatenate([c[:, :1], c[:, 1:-1:2]], axis=1) if c.shape[1] > 2 else c[:, :1]
    centre = c[:, 0::2]
    right = c[:, 1::2]
    left = left[:, :centre.shape[1]]
    return (left + 2.0 * centre + right) * 0.25


def _subsample_v(c: np.ndarray) -> np.ndarray:
    return (c[0::2] + c[1::2]) * 0.5


def rgb_to_planes(rgb: np.ndarray, pix_fmt: str) -> list[np.ndarray]:
    """uint8 (H, W, 3|4) RGB[A] -> the planes of ``pix_fmt`` (Y, Cb, Cr[, A]), uint8 or uint16
    (10-bit, little-endian on every machine numpy runs on). H and W must already fit the subsampling."""
    bits, sx, sy, alpha = PIX_FMT_LAYOUT[pix_fmt]
    x = rgb[..., :3].astype(np.float32) * np.float32(1.0 / 255.0)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = KR * r + KG * g + KB * b
    cb = (b - y) * np.float32(0.5 / (1.0 - KB))
    cr = (r - y) * np.float32(0.5 / (1.0 - KR))
    del x, r, g, b
    if sx == 2:
        cb, cr = _subsample_h(cb), _subsample_h(cr)
    if sy == 2:
        cb, cr = _subsample_v(cb), _subsample_v(cr)
    scale = float(1 << (bits - 8))
    top = (1 << bits) - 1
    dtype = np.uint8 if bits == 8 else np.uint16
    planes = [np.clip(np.rint((16.0 + 219.0 * y) * scale), 0, top).astype(dtype)]
    for c in (cb, cr):
        planes.append(np.clip(np.rint((128.0 + 224.0 * c) * scale), 0, top).astype(dtype))
    if alpha:
        if rgb.shape[-1] == 4:
            a = rgb[..., 3]
        else:
            a = np.full(rgb.shape[:2], 255, np.uint8)
        planes.append(a if bits == 8 else np.rint(a.astype(np.float32) * (top / 255.0)).astype(dtype))
    return planes


def _upsample_h(c: np.ndarray) -> np.ndarray:
    """Left siting: even columns are the samples, odd columns the mean of their two neighbours."""
    out = np.empty((c.shape[0], 2 * c.shape[1]), np.float32)
    out[:, 0::2] = c
    out[:, 1::2] = (c + np.concatenate([c[:, 1:], c[:, -1:]], axis=1)) * 0.5
    return out


def _upsample_v(c: np.ndarray) -> np.ndarray:
    """Samples between two rows: each row is 3/4 its own sample plus 1/4 the nearer neighbour."""
    up = np.concatenate([c[:1], c[:-1]], axis=0)
    down = np.concatenate([c[1:], c[-1:]], axis=0)
    out = np.empty((2 * c.shape[0], c.shape[1]), np.float32)
    out[0::2] = 0.75 * c + 0.25 * up
    out[1::2] = 0.75 * c + 0.25 * down
    return out


def ycbcr_to_rgb(planes: list[np.ndarray], pix_fmt: str) -> np.ndarray:
    """The inverse (linear chroma upsampling for the same siting), float RGB in [0, 1]. For tests and tools."""
    bits, sx, sy, _ = PIX_FMT_LAYOUT[pix_fmt]
    scale = float(1 << (bits - 8))
    y = (planes[0].astype(np.float32) / scale - 16.0) / 219.0
    cb = (planes[1].astype(np.float32) / scale - 128.0) / 224.0
    cr = (planes[2].astype(np.float32) / scale - 128.0) / 224.0
    if sx == 2:
        cb, cr = _upsample_h(cb), _upsample_h(cr)
    if sy == 2:
        cb, cr = _upsample_v(cb), _upsample_v(cr)
    cb, cr = cb[:y.shape[0], :y.shape[1]], cr[:y.shape[0], :y.shape[1]]
    r = y + 2.0 * (1.0 - KR) * cr
    b = y + 2.0 * (1.0 - KB) * cb
    g = (y - KR * r - KB * b) / KG
    return np.clip(np.stack([r, g, b], axis=-1), 0.0, 1.0)


def fill_frame(frame, planes: list[np.ndarray]):
    """Copy planes into a PyAV VideoFrame, honouring each plane's line size (row padding)."""
    for plane, data in zip(frame.planes, planes):
        rows = data.shape[0]
        row_bytes = data.shape[1] * data.itemsize
        target = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
        target[:rows, :row_bytes] = data.view(np.uint8).reshape(rows, row_bytes)
    return frame


def prepare(rgb: np.ndarray, pix_fmt: str) -> list[np.ndarray]:
    """Pad to the subsampling grid, then convert."""
    h, w = rgb.shape[:2]
    pw, ph = padded_size(w, h, pix_fmt)
    return rgb_to_planes(_pad_to(rgb, pw, ph), pix_fmt)
