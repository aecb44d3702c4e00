"""Every format written and decoded back: frame count, size, per-frame duration, loop count, alpha,
pingpong, the PNG sequence, the sidecar. Small clips (8 frames, 64x64)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from tests.test_video_support import METADATA, decode_any, decode_av, decode_pillow, make_pattern
from video import FORMATS, HAVE_AV, ImageFrames, encode, frame_order, save, ui_for

VIDEO_FORMATS = [name for name, spec in FORMATS.items() if spec.is_video]
needs_av = pytest.mark.skipif(not HAVE_AV, reason="PyAV is not installed")


def write(tmp_path, format_name, frames, name="clip", **kwargs):
    spec = FORMATS[format_name]
    path = str(tmp_path / (f"{name}.{spec.extension}" if spec.extension else name))
    return encode(ImageFrames(frames), path, format_name, kwargs.pop("frame_rate", 8.0), metadata=METADATA,
                  **kwargs)


def test_every_advertised_format_is_listed_with_its_encoder():
    assert list(FORMATS)[:4] == ["image/webp", "image/gif", "image/apng", "image/png-sequence"]
    if HAVE_AV:
        import av
        for name in VIDEO_FORMATS:
            av.codec.Codec(FORMATS[name].codec, "w")  # the encoder really exists
        assert "video/h264-mp4" in FORMATS and "video/vp9-webm" in FORMATS


@pytest.mark.parametrize("format_name", list(FORMATS))
def test_round_trip_count_size_and_sidecar(tmp_path, format_name):
    frames = make_pattern(8, 48, 64)
    for i in range(8):  # a white block whose position is the frame number
        frames[i, -8:, :] = 0.0
        frames[i, -8:, 8 * i:8 * i + 8] = 1.0
    result = write(tmp_path, format_name, torch.from_numpy(frames))
    decoded = decode_any(result.path)
    assert decoded.shape[:3] == (8, 48, 64)
    assert result.frames == 8
    reference = np.rint(frames * 255)
    assert np.abs(decoded[..., :3].astype(np.float64) - reference).mean() < 12  # the right pictures, in order
    order = [int(np.argmax(d[-6:-2, :, :3].astype(float).mean(axis=(0, 2)).reshape(8, 8).mean(axis=1)))
             for d in decoded]
    assert order == list(range(8))
    assert json.load(open(result.sidecar)) == METADATA
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".partial")]


@pytest.mark.parametrize("format_name,loop_count,stored", [
    ("image/webp", 0, 0), ("image/webp", 2, 3),      # WebP counts total plays
    ("image/gif", 0, 0), ("image/gif", 2, 2),        # NETSCAPE counts repeats after the first play
    ("image/apng", 0, 0), ("image/apng", 2, 3),      # APNG counts total plays
])
def test_loop_count_and_frame_durations_of_animated_images(tmp_path, format_name, loop_count, stored):
    result = write(tmp_path, format_name, make_pattern(8, 32, 32), frame_rate=8.0, loop_count=loop_count)
    frames, durations, info = decode_pillow(result.path)
    assert len(frames) == 8
    assert info.get("loop", 1 if format_name == "image/gif" else None) == stored
    if format_name == "image/gif":  # 1/100 s steps: 12.5 alternates 12, 13 so that 8 frames last 1 s
        assert durations == [130, 120] * 4
    else:
        assert durations == [125] * 8


@pytest.mark.parametrize("format_name,unit", [("image/webp", 1000), ("image/gif", 100), ("image/apng", None)])
def test_durations_add_up_at_fractional_rates(tmp_path, format_name, unit):
    """12 fps is 83.3 ms: WebP (ms) and GIF (1/100 s) alternate rounded steps so the total is exact;
    APNG stores the exact fraction 1/12."""
    result = write(tmp_path, format_name, make_pattern(12, 16, 16), frame_rate=12.0)
    _, durations, _ = decode_pillow(result.path)
    assert sum(durations) == pytest.approx(1000.0, abs=0.01)
    if unit:
        step = 1000 // unit
        assert set(durations) <= {83 // step * step, (83 // step + 1) * step}
    else:
        assert durations == [pytest.approx(1000 / 12)] * 12


@needs_av
@pytest.mark.parametrize("format_name", VIDEO_FORMATS)
@pytest.mark.parametrize("frame_rate", [8.0, 29.97])
def test_video_timestamps_follow_the_frame_rate(tmp_path, format_name, frame_rate):
    result = write(tmp_path, format_name, make_pattern(8, 32, 32), frame_rate=frame_rate)
    frames, times, info = decode_av(result.path)
    assert len(frames) == 8 and (info["width"], info["height"]) == (32, 32)
    steps = np.diff(sorted(times))
    assert np.allclose(steps, 1.0 / frame_rate, atol=1e-3)


@needs_av
def test_loop_count_repeats_the_frames_in_a_video(tmp_path):
    result = write(tmp_path, "video/h264-mp4", make_pattern(8, 32, 32), loop_count=2)
    frames, _, _ = decode_av(result.path)
    assert len(frames) == 24 and result.frames == 24
    assert np.abs(frames[0].astype(int) - frames[8]).mean() < 3  # the second play starts over


@pytest.mark.parametrize("format_name", ["image/webp", "image/apng"] + (["video/h264-mp4"] if HAVE_AV else []))
def test_pingpong_plays_back_without_repeating_the_ends(tmp_path, format_name):
    result = write(tmp_path, format_name, make_pattern(5, 32, 32), pingpong=True)
    decoded = decode_any(result.path)
    assert len(decoded) == 8  # 0 1 2 3 4 3 2 1
    assert frame_order(5, pingpong=True) == [0, 1, 2, 3, 4, 3, 2, 1]
    assert np.abs(decoded[3].astype(int) - decoded[5]).mean() < 3


@pytest.mark.parametrize("format_name", ["image/webp", "image/apng", "image/png-sequence", "image/gif"]
                         + (["video/vp9-webm", "video/prores-mov"] if HAVE_AV else []))
def test_alpha_is_kept_where_the_format_has_it(tmp_path, format_name):
    frames = make_pattern(4, 32, 32, alpha=True)
    result = write(tmp_path, format_name, frames)
    if format_name == "video/vp9-webm":
        # FFmpeg's native VP9 decoder drops alpha; the stream is yuva420p and marked alpha_mode=1.
        import av
        with av.open(result.path) as c:
            assert c.streams.video[0].metadata.get("alpha_mode") == "1"
        return
    if format_name == "video/prores-mov":
        frames_out, _, info = decode_av(result.path)
        assert info["pix_fmt"].startswith("yuva444p")  # ProRes 4444 with alpha (decoded as 10 or 12 bit)
    else:
        frames_out = decode_any(result.path) if format_name != "image/gif" else decode_pillow(result.path)[0]
    assert frames_out.shape[-1] == 4
    assert (frames_out[:, :8, :8, 3] == 0).all()      # the transparent corner
    assert (frames_out[:, 16:, 16:, 3] == 255).all()  # opaque elsewhere


@needs_av
def test_h264_drops_alpha_and_still_writes(tmp_path):
    result = write(tmp_path, "video/h264-mp4", make_pattern(2, 32, 32, alpha=True))
    frames, _, info = decode_av(result.path)
    assert info["pix_fmt"] == "yuv420p" and frames.shape == (2, 32, 32, 3)


@needs_av
def test_odd_sizes_are_padded_for_subsampled_video(tmp_path):
    result = write(tmp_path, "video/h264-mp4", make_pattern(2, 31, 33))
    frames, _, info = decode_av(result.path)
    assert (info["width"], info["height"]) == (34, 32)


@needs_av
@pytest.mark.parametrize("pix_fmt", ["yuv420p10le", "yuv444p"])
def test_pix_fmt_is_honoured(tmp_path, pix_fmt):
    result = write(tmp_path, "video/h264-mp4", make_pattern(2, 32, 32), options={"pix_fmt": pix_fmt})
    assert decode_av(result.path)[2]["pix_fmt"] == pix_fmt


def test_png_sequence_is_a_folder_of_numbered_frames(tmp_path):
    result = save(ImageFrames(make_pattern(3, 16, 16)), str(tmp_path), "seq/run", "image/png-sequence", 8.0,
                  metadata=METADATA)
    assert os.path.isdir(result.path) and result.path.endswith("run_00001")
    assert sorted(os.listdir(result.path)) == ["frame_00001.png", "frame_00002.png", "frame_00003.png"]
    assert result.sidecar == result.path + ".json"
    ui = ui_for(result, str(tmp_path), "output")
    assert [i["filename"] for i in ui["images"]] == ["frame_00001.png", "frame_00002.png", "frame_00003.png"]
    assert {i["subfolder"] for i in ui["images"]} == {"seq/run_00001"}


def test_names_count_up_per_prefix_and_skip_other_formats(tmp_path):
    frames = ImageFrames(make_pattern(2, 8, 8))
    a = save(frames, str(tmp_path), "clip", "image/webp", 8.0)
    b = save(frames, str(tmp_path), "clip", "image/gif", 8.0)
    c = save(frames, str(tmp_path), "clip", "image/png-sequence", 8.0)
    d = save(frames, str(tmp_path), "clip", "image/webp", 8.0)
    assert [os.path.basename(r.path) for r in (a, b, c, d)] == ["clip_00001.webp", "clip_00002.gif", "clip_00003",
                                                                "clip_00004.webp"]


def test_ui_values_for_the_frontend(tmp_path):
    frames = ImageFrames(make_pattern(2, 8, 8))
    webp = save(frames, str(tmp_path), "a/b", "image/webp", 8.0)
    assert ui_for(webp, str(tmp_path), "output") == {
        "images": [{"filename": "b_00001.webp", "subfolder": "a", "type": "output"}], "animated": (True,)}
    gif = save(frames, str(tmp_path), "b", "image/gif", 8.0)
    assert ui_for(gif, str(tmp_path), "temp") == {"animatediff_preview": [
        {"filename": "b_00001.gif", "subfolder": "", "type": "temp", "format": "image/gif", "media": "image",
         "mime": "image/gif"}]}


@needs_av
def test_formats_browsers_cannot_play_get_an_animated_webp_preview(tmp_path):
    out, temp = tmp_path / "out", tmp_path / "temp"
    result = save(ImageFrames(make_pattern(3, 16, 16)), str(out), "pro", "video/prores-mov", 8.0,
                  preview_dir=str(temp))
    assert result.preview and os.path.dirname(result.preview) == str(temp)
    assert len(decode_pillow(result.preview)[0]) == 3
    assert ui_for(result, str(out), "output", str(temp)) == {
        "images": [{"filename": os.path.basename(result.preview), "subfolder": "", "type": "temp"}],
        "animated": (True,)}
    playable = save(ImageFrames(make_pattern(3, 16, 16)), str(out), "web", "video/h264-mp4", 8.0,
                    preview_dir=str(temp))
    assert playable.preview is None
    ui = ui_for(playable, str(out), "output", str(temp))
    assert ui["animatediff_preview"][0]["media"] == "video" and ui["animatediff_preview"][0]["mime"] == "video/mp4"


@needs_av
@pytest.mark.parametrize("format_name", VIDEO_FORMATS)
@pytest.mark.parametrize("count", [1, 2, 3])
def test_very_short_clips(tmp_path, format_name, count):
    """One or two frames: encoders with B-frames (x265) must still give the muxer valid timestamps."""
    result = write(tmp_path, format_name, make_pattern(count, 32, 32))
    frames, _, _ = decode_av(result.path)
    assert len(frames) == count
