"""The prompt and workflow, in the shape each format carries them, so that dropping a file onto the
ComfyUI frontend restores the workflow. Pure: no ComfyUI import.

* PNG / APNG / PNG sequence: one tEXt chunk per key ("prompt", "workflow", ...) holding JSON, as
  ComfyUI's SaveImage and SaveAnimatedPNG write them.
* WebP: EXIF, tag 0x0110 "prompt:<json>", tags counting down from 0x010F "<key>:<json>" (ComfyUI's
  SaveAnimatedWEBP layout, which the frontend reads).
* GIF: one comment extension holding the JSON object of every key.
* MP4 / MOV: QuickTime metadata (``udta/meta`` with ``keys`` + ``ilst``, FFmpeg's
  ``movflags=use_metadata_tags``), one key per entry ("prompt", "workflow", ...) holding JSON: the frontend
  reads the keys "prompt" and "workflow" from there. A "comment" key holds the JSON object of every key
  too, for tools that read only the comment.
* WebM: Matroska SimpleTags, one per key (FFmpeg writes the names upper-case: "PROMPT", "WORKFLOW",
  which is what the frontend looks for), in the header, so the first bytes of the file hold them.
* Every format: a ``.json`` sidecar with the whole object.
"""

from __future__ import annotations

import json
import struct

EXIF_PROMPT_TAG = 0x0110
EXIF_FIRST_EXTRA_TAG = 0x010F


def build(prompt=None, extra_pnginfo=None) -> dict:
    metadata = {}
    if prompt is not None:
        metadata["prompt"] = prompt
    if extra_pnginfo:
        metadata.update(extra_pnginfo)
    return metadata


def dumps(value) -> str:
    """JSON as ComfyUI writes it (ASCII only, so it fits a PNG tEXt chunk unchanged)."""
    return json.dumps(value)


def png_text_chunks(metadata: dict | None) -> list[tuple[str, str]]:
    return [(key, dumps(value)) for key, value in (metadata or {}).items()]


def webp_exif(metadata: dict | None) -> bytes | None:
    """EXIF bytes ("Exif\\0\\0" + TIFF) in the layout of ComfyUI's SaveAnimatedWEBP."""
    if not metadata:
        return None
    from PIL import Image
    exif = Image.Exif()
    if metadata.get("prompt") is not None:
        exif[EXIF_PROMPT_TAG] = "prompt:" + dumps(metadata["prompt"])
    tag = EXIF_FIRST_EXTRA_TAG
    for key, value in metadata.items():
        if key == "prompt":
            continue
        exif[tag] = f"{key}:{dumps(value)}"
        tag -= 1
    return exif.tobytes()


def container_tags(metadata: dict | None, with_comment: bool) -> dict[str, str]:
    """Format-level tags for FFmpeg muxers: one per key, plus "comment" with everything (MP4/MOV)."""
    tags = {key: dumps(value) for key, value in (metadata or {}).items()}
    if metadata and with_comment and "comment" not in tags:
        tags["comment"] = dumps(metadata)
    return tags


def gif_comment(metadata: dict | None) -> bytes | None:
    if not metadata:
        return None
    return json.dumps(metadata, separators=(",", ":")).encode("utf-8")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    import zlib
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_text_chunk(key: str, text: str) -> bytes:
    """tEXt if the text is Latin-1, iTXt (UTF-8) otherwise, as Pillow's PngInfo.add_text does."""
    try:
        return png_chunk(b"tEXt", key.encode("latin-1") + b"\0" + text.encode("latin-1"))
    except UnicodeEncodeError:
        return png_chunk(b"iTXt", key.encode("latin-1", "replace") + b"\0\0\0\0\0" + text.encode("utf-8"))
