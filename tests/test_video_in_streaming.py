"""Video in, beyond the frames: the sound under the loaded frames, the memory plan that refuses a clip before
decoding it, and Load Video (latents), which encodes a few frames at a time (pure reader, then the nodes in
the in-process host)."""

from __future__ import annotations

import itertools
import os
import math

import numpy as np
import pytest

from tests.test_load_video import index_of, make_video
from video_in import LoadOptions, MemoryPlan, VideoReadError, iter_frames, planned_frame_count, probe, read_audio
from video_in import read_frames

av = pytest.importorskip("av")

RATE, FRAMES, SAMPLE_RATE = 12, 24, 16000


def tone(seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Stereo test sound: left a 440 Hz sine, right a ramp, so offsets and channel order both show."""
    t = np.arange(int(seconds * rate)) / rate
    return np.stack([0.5 * np.sin(2 * np.pi * 440 * t), (t / seconds) - 0.5]).astype(np.float32)


def make_video_with_sound(path, frames=FRAMES, rate=RATE):
    """make_video's grey levels, with tone() as lossless PCM in a .mov (the sound lasts as long as the frames)."""
    sound = tone(frames / rate)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = 96, 64, "yuv420p"
        video.options = {"crf": "0", "preset": "ultrafast"}
        audio = out.add_stream("pcm_s16le", rate=SAMPLE_RATE, layout="stereo")
        for i in range(frames):
            a = np.full((64, 96, 3), 16 + 8 * i, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                out.mux(packet)
        pcm = (np.clip(sound.T, -1, 1) * 32767).astype(np.int16).reshape(1, -1)  # packed s16
        chunk = 1024
        for start in range(0, sound.shape[1], chunk):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, 2 * start:2 * (start + chunk)]),
                                               format="s16", layout="stereo")
            frame.sample_rate, frame.pts = SAMPLE_RATE, start
            for packet in audio.encode(frame):
                out.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode():
                out.mux(packet)
    return str(path), sound


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("video") / "clip.mp4", frames=FRAMES, rate=RATE)


@pytest.fixture(scope="module")
def clip_with_sound(tmp_path_factory):
    return make_video_with_sound(tmp_path_factory.mktemp("video") / "sound.mov")


# ---------------------------------------------------------------------------------------------
# Pure: the reader

def test_iter_frames_yields_what_read_frames_returns(clip):
    options = LoadOptions(skip_first_frames=2, select_every_nth=3, frame_load_cap=5)
    selection, frames = iter_frames(clip, options)
    streamed = list(frames)
    assert [index_of(f) for f in streamed] == [2, 5, 8, 11, 14]
    assert selection.frame_count == 5 and selection.frame_rate == RATE / 3
    whole = read_frames(clip, options)
    assert np.array_equal(np.stack(streamed), whole.frames)


@pytest.mark.parametrize("force_rate, skip, nth, cap", list(itertools.product(
    [0.0, 5.0, 30.0], [0, 3, 40], [1, 2, 5], [0, 4])))
def test_planned_frame_count_is_what_decoding_gives(clip, force_rate, skip, nth, cap):
    options = LoadOptions(force_rate=force_rate, skip_first_frames=skip, select_every_nth=nth, frame_load_cap=cap)
    planned = planned_frame_count(probe(clip), options)
    try:
        got = read_frames(clip, options).frame_count
    except VideoReadError:  # the selection leaves nothing
        got = 0
    assert planned == got


def test_memory_plan_refuses_naming_size_frames_and_what_fits():
    plan = MemoryPlan(frames=1000, width=512, height=512, bytes_per_value=5, what="as an IMAGE batch")
    assert plan.bytes == 1000 * 512 * 512 * 3 * 5
    plan.check(plan.bytes, "ok.mp4")  # fits exactly: no error
    with pytest.raises(VideoReadError) as refused:
        plan.check(2 * 1024 ** 3, "long.mp4", "Load Video (latents)")
    message = str(refused.value)
    assert message.startswith("video 'long.mp4': 1000 frames at 512x512 would take 3.7 GB as an IMAGE batch, "
                              "but 2.0 GB of memory is free. To make it fit: frame_load_cap 546 or less; or "
                              "custom_width 376 or less")
    assert message.endswith("; or select_every_nth above 1; or Load Video (latents)")
    # what it advises does fit
    assert MemoryPlan(546, 512, 512, 5, "").bytes <= 2 * 1024 ** 3
    assert MemoryPlan(1000, 376, 376, 5, "").bytes <= 2 * 1024 ** 3


def test_audio_under_the_selected_frames(clip_with_sound):
    path, sound = clip_with_sound
    # frames 6.. every 2nd, 5 frames: from 0.5 s for 5 / 6 fps = 0.833 s
    options = LoadOptions(skip_first_frames=6, select_every_nth=2, frame_load_cap=5)
    selection, frames = iter_frames(path, options)
    list(frames)
    assert (selection.start_time, round(selection.duration, 6)) == (0.5, round(5 / 6, 6))
    samples, rate = read_audio(path, selection.start_time, selection.duration, selection.first_frame_time)
    assert rate == SAMPLE_RATE and samples.dtype == np.float32
    first, n = int(0.5 * SAMPLE_RATE), int(round(5 / 6 * SAMPLE_RATE))
    assert samples.shape == (2, n)
    np.testing.assert_allclose(samples, sound[:, first:first + n], atol=2 / 32767)


def test_audio_past_the_end_is_padded_with_silence_and_no_stream_is_none(clip_with_sound, clip):
    path, sound = clip_with_sound
    samples, _ = read_audio(path, 1.5, 1.0)  # the sound ends at 2.0 s
    half = SAMPLE_RATE // 2
    np.testing.assert_allclose(samples[:, :half], sound[:, -half:], atol=2 / 32767)
    assert samples.shape == (2, SAMPLE_RATE) and not samples[:, half:].any()
    assert read_audio(clip, 0.0, 1.0) is None


# ---------------------------------------------------------------------------------------------
# The nodes, in the host

def node(host, name):
    return host.pack.NODE_CLASS_MAPPINGS[name]()


SELECTION = dict(force_rate=0.0, frame_load_cap=10, skip_first_frames=1, select_every_nth=2, custom_width=64,
                 custom_height=64, multiple_of_8=True)


@pytest.fixture
def in_input_folder(host, clip_with_sound, monkeypatch, tmp_path):
    """The clip with sound as 'sound.mov' in a fresh input folder of the in-process host."""
    import shutil
    shutil.copy(clip_with_sound[0], tmp_path / "sound.mov")
    monkeypatch.setattr(host.folder_paths, "get_input_directory", lambda: str(tmp_path))
    return "sound.mov"


def test_latents_equal_frames_through_vae_encode(host, sd15, in_input_folder):
    import torch
    images, count, rate, audio, width, height = node(host, "LoadVideoFrames").load(in_input_folder, **SELECTION)
    assert (images.shape, count, rate, width, height) == ((10, 64, 64, 3), 10, RATE / 2, 64, 64)
    with torch.inference_mode():
        reference = host.nodes.VAEEncode().encode(sd15.vae, images)[0]["samples"]
        for batch in (1, 3, 16):
            latent, count2, rate2, audio2, *_ = node(host, "LoadVideoLatents").load(
                in_input_folder, **SELECTION, vae=sd15.vae, encode_batch=batch)
            assert (count2, rate2) == (count, rate)
            assert latent["samples"].shape == reference.shape == (10, 4, 8, 8)
            assert (latent["samples"] - reference).abs().max().item() <= 1e-5, batch
    # the AUDIO output: the host's layout, the sound under frames 1, 3, ..., 19 (from 1/12 s for 10 / 6 s)
    for out in (audio, audio2):
        assert out["sample_rate"] == SAMPLE_RATE and out["waveform"].shape == (1, 2, int(round(10 / 6 * SAMPLE_RATE)))
        first = int(round(SAMPLE_RATE / 12))
        expected = clip_with_sound_sound(out["waveform"].shape[-1], first)
        np.testing.assert_allclose(out["waveform"][0].numpy(), expected, atol=2 / 32767)


def clip_with_sound_sound(n, first):
    sound = tone(FRAMES / RATE)
    return sound[:, first:first + n]


def test_a_clip_that_cannot_fit_is_refused_before_decoding(host, sd15, in_input_folder, monkeypatch):
    decoded = []
    real = host.pack.nodes.video_in.iter_frames

    def counting(*args, **kwargs):
        selection, frames = real(*args, **kwargs)

        def counted():
            for frame in frames:
                decoded.append(1)
                yield frame
        return selection, counted()
    monkeypatch.setattr(host.pack.nodes.video_in, "iter_frames", counting)
    monkeypatch.setattr(host.pack.comfy_host, "free_memory_bytes", lambda: 500_000)
    with pytest.raises(ValueError, match=r"video 'sound\.mov': 10 frames at 64x64 would take 0\.6 MB as an IMAGE "
                                         r"batch, but 0\.5 MB of memory is free\. To make it fit: frame_load_cap 8 "
                                         r"or less; .*Load Video \(latents\)"):
        node(host, "LoadVideoFrames").load(in_input_folder, **SELECTION)
    assert decoded == []
    # the latents of the same frames are small: they fit
    import torch
    with torch.inference_mode():  # as the host runs nodes
        latent = node(host, "LoadVideoLatents").load(in_input_folder, **SELECTION, vae=sd15.vae, encode_batch=4)[0]
    assert latent["samples"].shape[0] == 10 and len(decoded) == 10
    assert math.isclose(MemoryPlan(10, 64, 64, 5, "").bytes, 10 * 64 * 64 * 15)


@pytest.mark.parametrize("bad", [0, 257, 2.5, True, None])
def test_encode_batch_out_of_range_is_refused(host, sd15, in_input_folder, bad):
    with pytest.raises(ValueError, match=r"encode_batch is .*; expected a whole number from 1 to 256"):
        node(host, "LoadVideoLatents").load(in_input_folder, **SELECTION, vae=sd15.vae, encode_batch=bad)


# ---------------------------------------------------------------------------------------------
# A folder of images

def make_frames(folder, count=12, size=(40, 24)):
    """frame1.png ... frame<count>.png, frame i a flat grey of 10 * i (natural order differs from plain
    string order from frame10 on), plus a file that is not an image and a hidden one."""
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, count + 1):
        Image.new("RGB", size, (10 * i,) * 3).save(folder / f"frame{i}.png")
    (folder / "notes.txt").write_text("not a frame")
    Image.new("RGB", size, (255, 0, 0)).save(folder / ".hidden.png")
    return folder


def test_image_folder_natural_order_selection_and_size(tmp_path):
    from video_in import iter_images, list_image_folders, natural_key, select_images
    folder = make_frames(tmp_path / "shots")
    (tmp_path / "empty").mkdir()
    assert list_image_folders(str(tmp_path)) == ["shots"]
    assert sorted(["f10", "f2", "F1"], key=natural_key) == ["F1", "f2", "f10"]
    sequence = select_images(str(folder), LoadOptions(skip_first_frames=1, select_every_nth=4, width=64,
                                                      multiple_of=8))
    assert sequence.names == ["frame2.png", "frame6.png", "frame10.png"]
    assert (sequence.width, sequence.height) == (64, 40)  # 64 wide, height from 40x24's aspect ratio, to 8
    frames = list(iter_images(sequence))
    assert [f.shape for f in frames] == [(40, 64, 3)] * 3
    assert [int(f.mean()) for f in frames] == [20, 60, 100]


@pytest.mark.parametrize("options, message", [
    (LoadOptions(force_rate=8.0), r"force_rate does not apply to a folder of images"),
    (LoadOptions(skip_first_frames=50), r"no images left from folder 'shots': it has 12, and skip_first_frames=50"),
])
def test_image_folder_errors(tmp_path, options, message):
    from video_in import select_images
    folder = make_frames(tmp_path / "shots")
    with pytest.raises(VideoReadError, match=message):
        select_images(str(folder), options)


def test_image_folder_bad_files_are_named(tmp_path):
    from video_in import iter_images, select_images
    folder = make_frames(tmp_path / "shots", count=3)
    (folder / "frame2.png").write_bytes(b"not a png")
    sequence = select_images(str(folder), LoadOptions())
    with pytest.raises(VideoReadError, match=r"cannot read image 'frame2\.png' in folder 'shots'"):
        list(iter_images(sequence))
    with pytest.raises(VideoReadError, match=r"image folder 'none' not found"):
        select_images(str(tmp_path / "none"), LoadOptions())


def test_load_image_folder_node(host, monkeypatch, tmp_path):
    make_frames(tmp_path / "shots")
    monkeypatch.setattr(host.folder_paths, "get_input_directory", lambda: str(tmp_path))
    cls = host.pack.NODE_CLASS_MAPPINGS["LoadImageFolder"]
    assert cls.INPUT_TYPES()["required"]["folder"][0] == ["shots"]
    assert cls.VALIDATE_INPUTS(folder="shots") is True
    assert "not in ComfyUI's input folder" in cls.VALIDATE_INPUTS(folder="missing")
    assert "outside" in cls.VALIDATE_INPUTS(folder="../shots")
    images, count, rate, width, height = cls().load("shots", 12.0, 5, 0, 2, 0, 0, True)
    assert images.shape == (5, 24, 40, 3) and (count, rate, width, height) == (5, 6.0, 40, 24)
    assert [round(v * 255) for v in images.mean(dim=(1, 2, 3)).tolist()] == [10, 30, 50, 70, 90]
    with pytest.raises(ValueError, match=r"frame_rate is nan; expected a number of frames per second"):
        cls().load("shots", float("nan"), 5, 0, 1, 0, 0, True)


# ---------------------------------------------------------------------------------------------
# Load Video (path): outside the input folder, only where the server's owner allows it

def test_load_video_by_path_only_inside_allowed_folders(host, clip_with_sound, in_input_folder, monkeypatch,
                                                        tmp_path):
    import shutil
    allowed, other = tmp_path / "clips", tmp_path / "private"
    allowed.mkdir()
    other.mkdir()
    shutil.copy(clip_with_sound[0], allowed / "take1.mov")
    shutil.copy(clip_with_sound[0], other / "secret.mov")
    os.symlink(other / "secret.mov", allowed / "link.mov")
    cls = host.pack.NODE_CLASS_MAPPINGS["LoadVideoPath"]
    path = str(allowed / "take1.mov")
    monkeypatch.delenv("ANIMATEDIFF_VIDEO_DIRS", raising=False)
    assert cls.VALIDATE_INPUTS(path=path).startswith("loading a video by path is off on this server; its owner can "
                                                "allow folders with the environment variable ANIMATEDIFF_VIDEO_DIRS")
    with pytest.raises(ValueError, match="loading a video by path is off"):
        cls().load(path=path, **SELECTION)
    monkeypatch.setenv("ANIMATEDIFF_VIDEO_DIRS", f"{allowed}{os.pathsep}{tmp_path / 'elsewhere'}")
    assert cls.VALIDATE_INPUTS(path=path) is True
    by_path = cls().load(path=path, **SELECTION)
    by_name = node(host, "LoadVideoFrames").load(in_input_folder, **SELECTION)
    assert torch_equal(by_path[0], by_name[0]) and by_path[1:3] == by_name[1:3]
    for bad, message in ((str(other / "secret.mov"), "is not in a folder this server allows"),
                         (str(allowed / ".." / "private" / "secret.mov"), "is not in a folder this server allows"),
                         (str(allowed / "link.mov"), "is not in a folder this server allows"),  # symlink out
                         ("take1.mov", "is not an absolute path"),
                         (str(allowed / "missing.mov"), "not found")):
        assert message in cls.VALIDATE_INPUTS(path=bad), bad


def torch_equal(a, b):
    import torch
    return torch.equal(a, b)


def test_soundtrack_survives_load_video_to_video_combine(host, in_input_folder, clip_with_sound, tmp_path):
    """vid2vid keeps its sound: Load Video (frames)'s audio into Video Combine (ProRes MOV, lossless PCM):
    the written file's sound is the source's sound under the loaded frames."""
    from tests.test_video_audio import read_audio as read_written_audio
    from video import FORMATS, ImageFrames, encode
    if "video/prores-mov" not in FORMATS:
        pytest.skip("ProRes is not available here")
    images, count, rate, audio, *_ = node(host, "LoadVideoFrames").load(in_input_folder, **SELECTION)
    path = str(tmp_path / "kept.mov")
    encode(ImageFrames(images), path, "video/prores-mov", rate, audio=audio)
    samples, sample_rate, codec = read_written_audio(path)
    assert codec.startswith("pcm_s16") and sample_rate == SAMPLE_RATE
    n = int(round(count / rate * SAMPLE_RATE))
    first = int(round(SAMPLE_RATE / 12))  # the first loaded frame is frame 1 of a 12 fps clip
    np.testing.assert_allclose(samples[:, :n], clip_with_sound[1][:, first:first + n], atol=3 / 32767)
