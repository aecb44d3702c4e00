"""The workflow inside: prompt and workflow read back from every format, the way the ComfyUI frontend
reads them (tests/test_video_support.py has the readers), equal to what went in; and the sidecar."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.test_video_support import (METADATA, PROMPT, WORKFLOW, embedded_metadata, isobmff_metadata,
                                      make_pattern, webm_metadata)
from video import FORMATS, HAVE_AV, ImageFrames, encode
from video.metadata import build, container_tags


def write(tmp_path, format_name, metadata=METADATA, frames=None):
    spec = FORMATS[format_name]
    path = str(tmp_path / (f"m.{spec.extension}" if spec.extension else "m"))
    return encode(ImageFrames(make_pattern(4, 32, 32) if frames is None else frames), path, format_name, 8.0,
                  metadata=metadata)


@pytest.mark.parametrize("format_name", list(FORMATS))
def test_prompt_and_workflow_come_back_from_every_format(tmp_path, format_name):
    result = write(tmp_path, format_name)
    found = embedded_metadata(result.path)
    assert found["prompt"] == PROMPT
    assert found["workflow"] == WORKFLOW
    assert json.load(open(result.sidecar, encoding="utf-8")) == METADATA


def test_png_sequence_frames_each_carry_it(tmp_path):
    result = write(tmp_path, "image/png-sequence")
    from tests.test_video_support import png_metadata
    for name in sorted(os.listdir(result.path)):
        assert png_metadata(os.path.join(result.path, name)) == METADATA


def test_webp_exif_layout_matches_comfyui(tmp_path):
    """0x0110 holds 'prompt:<json>', 0x010F the next key (the workflow), as SaveAnimatedWEBP writes."""
    from PIL import Image
    exif = Image.open(write(tmp_path, "image/webp").path).getexif()
    assert json.loads(exif[0x0110].split(":", 1)[1]) == PROMPT
    assert exif[0x010F].startswith("workflow:") and json.loads(exif[0x010F].split(":", 1)[1]) == WORKFLOW


def test_apng_text_chunks_are_what_pillow_reads(tmp_path):
    from PIL import Image
    info = Image.open(write(tmp_path, "image/apng").path).info
    assert json.loads(info["prompt"]) == PROMPT and json.loads(info["workflow"]) == WORKFLOW


@pytest.mark.skipif(not HAVE_AV, reason="PyAV is not installed")
@pytest.mark.parametrize("format_name", [n for n in ("video/h264-mp4", "video/h265-mp4", "video/prores-mov")
                                         if n in FORMATS])
def test_quicktime_keys_and_comment(tmp_path, format_name):
    """MP4 / MOV: 'prompt' and 'workflow' QuickTime keys (what the frontend reads), and 'comment' with the
    whole object, all visible to FFmpeg as container tags; the index sits before the media data."""
    import av
    result = write(tmp_path, format_name)
    with av.open(result.path) as c:
        tags = dict(c.metadata)
    assert json.loads(tags["prompt"]) == PROMPT and json.loads(tags["workflow"]) == WORKFLOW
    assert json.loads(tags["comment"]) == METADATA
    data = open(result.path, "rb").read()
    assert data.index(b"moov") < data.index(b"mdat")  # faststart: readers of the first bytes find it


@pytest.mark.skipif(not HAVE_AV, reason="PyAV is not installed")
@pytest.mark.parametrize("format_name", [n for n in ("video/vp9-webm", "video/av1-webm") if n in FORMATS])
def test_webm_tags_are_in_the_first_two_megabytes(tmp_path, format_name):
    """The frontend reads WebM tags from the first 2 MiB only: they must be in the header, before the
    frames, even when the file is larger than that."""
    options = {"crf": 0}
    noisy = np.random.default_rng(0).random((24, 512, 512, 3), dtype=np.float32)
    spec = FORMATS[format_name]
    path = str(tmp_path / f"big.{spec.extension}")
    encode(ImageFrames(noisy), path, format_name, 8.0, metadata=METADATA, options=options)
    data = open(path, "rb").read()
    assert len(data) > 2 * 1024 * 1024
    assert webm_metadata(data) == {"prompt": PROMPT, "workflow": WORKFLOW}


def test_big_workflow_and_nan_survive(tmp_path):
    """A large workflow (hundreds of nodes) and Python's NaN/Infinity tokens (which the frontend parses too)."""
    workflow = {"nodes": [{"id": i, "type": "Note", "widgets_values": ["x" * 200]} for i in range(600)],
                "extra": {"ds": {"scale": float("inf")}}}
    metadata = {"prompt": PROMPT, "workflow": workflow}
    for name in [n for n in ("image/webp", "image/apng", "video/h264-mp4", "video/vp9-webm") if n in FORMATS]:
        result = write(tmp_path / name.replace("/", "_"), name, metadata=metadata, frames=make_pattern(2, 16, 16))
        assert embedded_metadata(result.path)["workflow"] == workflow


def test_no_metadata_means_no_tags_and_an_empty_sidecar(tmp_path):
    result = write(tmp_path, "image/apng", metadata={})
    assert embedded_metadata(result.path) == {}
    assert json.load(open(result.sidecar)) == {}


def test_metadata_is_built_like_comfyui_savers():
    assert build({"1": {}}, {"workflow": {"nodes": []}}) == {"prompt": {"1": {}}, "workflow": {"nodes": []}}
    assert build(None, None) == {}
    tags = container_tags(METADATA, with_comment=True)
    assert set(tags) == {"prompt", "workflow", "comment"}
    assert set(container_tags(METADATA, with_comment=False)) == {"prompt", "workflow"}


def test_reader_ignores_other_quicktime_keys():
    assert isobmff_metadata(b"\0\0\0\x08free") == {}


def test_metadata_none_writes_neither_tags_nor_sidecar(tmp_path):
    """What the node passes when ComfyUI runs with --disable-metadata."""
    for name in [n for n in ("image/webp", "image/apng", "video/h264-mp4") if n in FORMATS]:
        result = write(tmp_path / name.replace("/", "_"), name, metadata=None, frames=make_pattern(2, 16, 16))
        assert result.sidecar is None
        assert embedded_metadata(result.path) == {}
        assert sorted(os.listdir(tmp_path / name.replace("/", "_"))) == [os.path.basename(result.path)]
