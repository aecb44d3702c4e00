"""Frames in: video_in (pure decoding: frame selection, re-timing, sizes, errors) and the
LoadVideoFrames node on a real ComfyUI server (input folder, upload route, validation messages)."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from PIL import Image, ImageSequence

from video_in import LoadOptions, VideoReadError, list_videos, probe, read_frames, target_size

av = pytest.importorskip("av")

STEP, BASE = 8, 16  # frame i is grey level BASE + STEP * i, so a decoded frame tells its index


def level_of(index: int) -> int:
    return BASE + STEP * index


def index_of(frame: np.ndarray) -> int:
    return int(round((float(frame.mean()) - BASE) / STEP))


def make_video(path, frames=24, rate=12, size=(96, 64), codec="libx264"):
    """A clip whose frame i is a flat grey of level_of(i) (with a small white square moving along
    the top, so frames are pictures, not just levels)."""
    width, height = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "rgb8" if codec == "gif" else "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "0", "preset": "ultrafast"}
        for i in range(frames):
            a = np.full((height, width, 3), level_of(i), np.uint8)
            a[1:3, (2 * i) % (width - 2):(2 * i) % (width - 2) + 2] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return str(path)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("video") / "clip.mp4")


def indices(result):
    return [index_of(f) for f in result.frames]


# ---------------------------------------------------------------------------------------------
# Pure decoding

def test_every_frame_at_the_source_rate(clip):
    result = read_frames(clip)
    assert result.frames.shape == (24, 64, 96, 3) and result.frames.dtype == np.uint8
    assert indices(result) == list(range(24)) == result.source_indices
    assert result.frame_rate == 12
    assert result.source.describe() == "h264 96x64 at 12 fps, 24 frames, 2.00 s"


def test_skip_then_every_nth_then_cap(clip):
    result = read_frames(clip, LoadOptions(skip_first_frames=3, select_every_nth=5, frame_load_cap=4))
    assert indices(result) == [3, 8, 13, 18]
    # played at the source's speed, every 5th frame of 12 fps is 2.4 fps
    assert result.frame_rate == pytest.approx(2.4)


def test_cap_stops_decoding_early_and_zero_means_all(clip):
    assert indices(read_frames(clip, LoadOptions(frame_load_cap=5))) == [0, 1, 2, 3, 4]
    assert read_frames(clip, LoadOptions(frame_load_cap=0)).frame_count == 24


def test_force_rate_drops_frames_when_slower(clip):
    result = read_frames(clip, LoadOptions(force_rate=6))
    assert indices(result) == list(range(0, 24, 2))
    assert result.frame_rate == 6


def test_force_rate_repeats_frames_when_faster(clip):
    result = read_frames(clip, LoadOptions(force_rate=24, frame_load_cap=8))
    assert indices(result) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert result.frame_rate == 24


def test_force_rate_comes_before_skip_and_nth(clip):
    # re-timed to 8 fps: instants 0, 1/8, 2/8 ... show source frames floor(12 t) = 0, 1, 3, 4, 6, 7, 9, ...
    result = read_frames(clip, LoadOptions(force_rate=8, skip_first_frames=2, select_every_nth=2, frame_load_cap=3))
    assert indices(result) == [3, 6, 9]
    assert result.frame_rate == 4


def test_force_rate_keeps_the_clip_length(clip):
    for rate, expected in ((8, 16), (5, 10), (30, 60)):
        assert read_frames(clip, LoadOptions(force_rate=rate)).frame_count == expected


@pytest.mark.parametrize("source,want,multiple,expected", [
    ((96, 64), (0, 0), 8, (96, 64)),
    ((100, 60), (0, 0), 8, (96, 64)),      # nearest multiple of 8 (12.5 -> 12, 7.5 -> 8)
    ((100, 60), (0, 0), 1, (100, 60)),
    ((96, 64), (48, 0), 8, (48, 32)),       # height follows the aspect ratio
    ((96, 64), (0, 40), 8, (64, 40)),
    ((96, 64), (50, 30), 1, (50, 30)),
    ((1920, 1080), (512, 0), 8, (512, 288)),
    ((10, 10), (3, 3), 8, (8, 8)),          # never below one multiple
])
def test_target_size(source, want, multiple, expected):
    assert target_size(*source, *want, multiple) == expected


def test_resize_and_multiple_of_8(tmp_path):
    path = make_video(tmp_path / "odd.mp4", frames=3, size=(100, 60))
    assert read_frames(path).frames.shape[1:3] == (64, 96)
    assert read_frames(path, LoadOptions(multiple_of=1)).frames.shape[1:3] == (60, 100)
    small = read_frames(path, LoadOptions(width=48))
    assert small.frames.shape[1:3] == (32, 48)
    # resizing keeps the picture: a flat grey stays that grey
    assert indices(small) == [0, 1, 2]


def test_gif_and_webm(tmp_path):
    gif = read_frames(make_video(tmp_path / "a.gif", frames=6, rate=10, codec="gif"))
    assert gif.frame_count == 6 and gif.frame_rate == pytest.approx(10)
    webm = read_frames(make_video(tmp_path / "a.webm", frames=6, rate=10, codec="libvpx-vp9"))
    assert webm.frame_count == 6 and webm.frames.shape[1:3] == (64, 96)


def test_list_videos(tmp_path):
    for name in ("b.mp4", "a.WEBM", "c.gif", "notes.txt", "image.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.mp4").mkdir()
    assert list_videos(str(tmp_path)) == ["a.WEBM", "b.mp4", "c.gif"]
    assert list_videos(str(tmp_path / "missing")) == []


# ---------------------------------------------------------------------------------------------
# Errors name the file and say what is wrong

def test_missing_file(tmp_path):
    with pytest.raises(VideoReadError, match=r"video 'nope\.mp4' not found"):
        read_frames(str(tmp_path / "nope.mp4"))


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoReadError, match=r"video 'empty\.mp4' is empty \(0 bytes\)"):
        read_frames(str(tmp_path / "empty.mp4"))


def test_not_a_video(tmp_path):
    (tmp_path / "notes.mp4").write_text("these are my notes, not a video\n" * 50)
    with pytest.raises(VideoReadError, match=r"cannot read video 'notes\.mp4': FFmpeg does not recognise it as a "
                                             r"video file \(Invalid data found when processing input\)"):
        read_frames(str(tmp_path / "notes.mp4"))


def test_audio_only(tmp_path):
    path = str(tmp_path / "sound.m4a")
    with av.open(path, "w") as out:
        stream = out.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in list(stream.encode(frame)) + list(stream.encode()):
            out.mux(packet)
    with pytest.raises(VideoReadError, match=r"video 'sound\.m4a' has no video stream \(it holds audio\)"):
        read_frames(path)


def test_truncated_file(tmp_path, clip):
    data = open(clip, "rb").read()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoReadError, match=r"'cut\.mp4'") as info:
        read_frames(str(path))
    assert "FFmpeg" in str(info.value) or "damaged" in str(info.value)


def test_selection_that_leaves_nothing(clip):
    with pytest.raises(VideoReadError, match=r"no frames left from video 'clip\.mp4': it has 24 frames, and "
                                             r"skip_first_frames=30 skips them all"):
        read_frames(clip, LoadOptions(skip_first_frames=30))


def test_bad_options(clip):
    with pytest.raises(ValueError, match="select_every_nth must be 1 or more"):
        read_frames(clip, LoadOptions(select_every_nth=0))


def test_probe(clip):
    info = probe(clip)
    assert (info.width, info.height, info.frame_rate, info.frame_count) == (96, 64, 12, 24)


# ---------------------------------------------------------------------------------------------
# The node on a real server

def load_video_prompt(video, **settings):
    inputs = {"video": video, "force_rate": 0.0, "frame_load_cap": 0, "skip_first_frames": 0, "select_every_nth": 1,
              "custom_width": 0, "custom_height": 0, "multiple_of_8": True}
    inputs.update(settings)
    return {
        "1": {"class_type": "LoadVideoFrames", "inputs": inputs},
        "2": {"class_type": "VideoCombine", "inputs": {"images": ["1", 0], "frame_rate": ["1", 2], "loop_count": 0,
                                                        "filename_prefix": "loadvideo/out", "format": "image/webp",
                                                        "pingpong": False, "save_output": True, "lossless": True}},
    }


def test_node_declaration(server):
    info = server.object_info["LoadVideoFrames"]
    assert info["display_name"] == "Load Video (frames)" and info["category"] == "AnimateDiff"
    # outputs added later come last, so saved workflows' links keep their slots
    assert info["output"] == ["IMAGE", "INT", "FLOAT", "AUDIO", "INT", "INT"]
    assert info["output_name"] == ["images", "frame_count", "frame_rate", "audio", "width", "height"]
    for name, spec in info["input"]["required"].items():
        assert spec[1].get("tooltip"), name


def test_upload_route_takes_a_video_and_the_list_shows_it(server, clip):
    name = server.upload(clip, name="upload_check.mp4", overwrite=True)
    assert name == "upload_check.mp4"
    with open(os.path.join(server.input_dir, name), "rb") as f, open(clip, "rb") as g:
        assert f.read() == g.read()
    listed = server.get_json("/object_info/LoadVideoFrames")["LoadVideoFrames"]["input"]["required"]["video"][0]
    assert "upload_check.mp4" in listed


def test_frames_through_the_server(server, clip):
    name = server.upload(clip, name="levels.mp4", overwrite=True)
    history = server.run(load_video_prompt(name, skip_first_frames=2, select_every_nth=3, frame_load_cap=5))
    (item,) = history["outputs"]["2"]["images"]
    image = Image.open(io.BytesIO(server.fetch_output(item)))
    frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(image)]
    assert [index_of(f) for f in frames] == [2, 5, 8, 11, 14]
    assert image.size == (96, 64)
    # frame_rate output wired to Video Combine: 12 fps / 3 = 4 fps -> 250 ms per frame
    assert image.info["duration"] == 250


def test_missing_file_is_refused_at_validation(server):
    from tools.comfy_server import PromptRejected
    with pytest.raises(PromptRejected, match=r"video 'not_there\.mp4' is not in ComfyUI's input folder"):
        server.run(load_video_prompt("not_there.mp4"))


def test_unreadable_file_is_refused_at_validation(server, tmp_path):
    from tools.comfy_server import PromptRejected
    bad = tmp_path / "broken.mp4"
    bad.write_text(json.dumps({"this is": "not a video"}) * 20)
    name = server.upload(str(bad), overwrite=True)
    with pytest.raises(PromptRejected, match=r"cannot read video 'broken\.mp4': FFmpeg does not recognise it"):
        server.run(load_video_prompt(name))


def test_selection_that_leaves_nothing_fails_with_the_reason(server, clip):
    from tools.comfy_server import ExecutionFailed
    name = server.upload(clip, name="short.mp4", overwrite=True)
    with pytest.raises(ExecutionFailed, match=r"no frames left from video 'short\.mp4'"):
        server.run(load_video_prompt(name, skip_first_frames=500))


def test_name_leading_outside_the_input_folder_is_refused(server):
    from tools.comfy_server import PromptRejected
    with pytest.raises(PromptRejected, match="leads outside the folder it names"):
        server.run(load_video_prompt("../../etc/passwd"))
