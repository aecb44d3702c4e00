"""Animated images (GIF, WebP) written with Pillow. Pure: no ComfyUI import.

Every writer goes through :func:`atomic_output`, so a failed encode never leaves a partial file
under the final name.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager

import numpy as np
from PIL import Image

FORMATS = {"image/gif": "gif", "image/webp": "webp"}

# EXIF tags the ComfyUI frontend reads from animated WebP: 0x0110 (Model) holds "prompt:<json>",
# the tags counting down from 0x010F (Make) hold "<key>:<json>" for each extra_pnginfo entry.
EXIF_PROMPT_TAG = 0x0110
EXIF_FIRST_EXTRA_TAG = 0x010F


class EncodeError(RuntimeError):
    pass


def to_uint8_frames(images) -> np.ndarray:
    """IMAGE batch (N, H, W, C) floats in [0, 1] -> uint8 array, rounded (not truncated)."""
    array = images.detach().cpu().float().numpy() if hasattr(images, "detach") else np.asarray(images, np.float32)
    if array.ndim != 4 or array.shape[-1] not in (1, 3, 4) or array.shape[0] == 0:
        raise EncodeError(f"expected an IMAGE batch shaped (frames, height, width, 1|3|4), got {tuple(array.shape)}")
    return np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)


def pingpong(frames: np.ndarray) -> np.ndarray:
    """Forward then backward, without repeating the two end frames."""
    if len(frames) < 3:
        return frames
    return np.concatenate([frames, frames[-2:0:-1]])


def frame_duration_ms(frame_rate: float) -> float:
    if not frame_rate > 0:
        raise EncodeError(f"frame_rate must be positive, got {frame_rate}")
    return 1000.0 / frame_rate


@contextmanager
def atomic_output(path: str):
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.partial")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _pil_frames(frames: np.ndarray) -> list[Image.Image]:
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    mode = "RGBA" if frames.shape[-1] == 4 else "RGB"
    return [Image.fromarray(f, mode) for f in frames]


def write_gif(frames: np.ndarray, path: str, frame_rate: float, loop_count: int, metadata: dict | None):
    images = _pil_frames(frames)
    # GIF stores durations in 1/100 s; round to the nearest step rather than truncate.
    duration = int(round(frame_duration_ms(frame_rate) / 10.0)) * 10
    extra = {"comment": json.dumps(metadata, separators=(",", ":"))} if metadata else {}
    if images[0].mode == "RGBA":
        # GIF has one transparent palette entry; Pillow maps fully transparent pixels to it.
        extra["disposal"] = 2
    with atomic_output(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=max(duration, 10),
                       loop=loop_count, optimize=False, **extra)


def webp_exif(first: Image.Image, metadata: dict | None) -> bytes | None:
    if not metadata:
        return None
    exif = first.getexif()
    if "prompt" in metadata and metadata["prompt"] is not None:
        exif[EXIF_PROMPT_TAG] = "prompt:" + json.dumps(metadata["prompt"])
    tag = EXIF_FIRST_EXTRA_TAG
    for key, value in metadata.items():
        if key == "prompt":
            continue
        exif[tag] = f"{key}:{json.dumps(value)}"
        tag -= 1
    return exif.tobytes()


def write_webp(frames: np.ndarray, path: str, frame_rate: float, loop_count: int, metadata: dict | None,
               lossless: bool = False, quality: int = 90):
    images = _pil_frames(frames)
    duration = int(round(frame_duration_ms(frame_rate)))
    extra = {}
    exif = webp_exif(images[0], metadata)
    if exif:
        extra["exif"] = exif
    # WebP counts total plays (0 = forever); loop_count counts repeats after the first play.
    loop = 0 if loop_count == 0 else loop_count + 1
    with atomic_output(path) as tmp:
        images[0].save(tmp, format="WEBP", save_all=True, append_images=images[1:], duration=duration,
                       loop=loop, lossless=lossless, quality=quality, method=4, **extra)


def write_sidecar(path: str, metadata: dict | None):
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(metadata or {}, f, indent=1)


def write_animation(images, path: str, format_name: str, frame_rate: float, loop_count: int = 0,
                    do_pingpong: bool = False, metadata: dict | None = None) -> str:
    """Encode an IMAGE batch to ``path`` in ``format_name`` (a key of FORMATS); returns ``path``."""
    if format_name not in FORMATS:
        raise EncodeError(f"unknown format '{format_name}'; choose one of {', '.join(FORMATS)}")
    if loop_count < 0:
        raise EncodeError(f"loop_count must be 0 (forever) or more, got {loop_count}")
    frames = to_uint8_frames(images)
    if do_pingpong:
        frames = pingpong(frames)
    writer = write_gif if FORMATS[format_name] == "gif" else write_webp
    writer(frames, path, frame_rate, loop_count, metadata)
    return path
