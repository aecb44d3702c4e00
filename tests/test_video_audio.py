"""AUDIO muxed into MP4 / WebM / MOV, cut or padded with silence to the video's length, and ignored
(with the video still written) by the formats that have no sound."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.test_video_support import decode_av, make_pattern
from video import FORMATS, HAVE_AV, ImageFrames, encode

pytestmark = pytest.mark.skipif(not HAVE_AV, reason="PyAV is not installed")


def tone(seconds: float, rate: int = 44100, channels: int = 2, freq: float = 440.0):
    t = torch.arange(int(seconds * rate), dtype=torch.float32) / rate
    wave = 0.5 * torch.sin(2 * torch.pi * freq * t)
    return {"waveform": wave.repeat(1, channels, 1), "sample_rate": rate}


def read_audio(path):
    import av
    with av.open(path) as c:
        stream = c.streams.audio[0]
        chunks = []
        for f in c.decode(stream):
            a = f.to_ndarray().astype(np.float32)
            if not f.format.is_planar:  # packed (PCM): one row of interleaved samples
                a = a.reshape(-1, len(f.layout.channels)).T
            if f.format.name.startswith("s16"):
                a = a / 32768.0
            chunks.append(a)
        rate = stream.rate
        codec = stream.codec_context.name
    return np.concatenate(chunks, axis=-1), rate, codec


@pytest.mark.parametrize("format_name,codec", [("video/h264-mp4", "aac"), ("video/vp9-webm", "opus"),
                                               ("video/prores-mov", "pcm_s16le")])
@pytest.mark.parametrize("seconds", [0.4, 3.0])  # shorter and longer than the 1 s video
def test_audio_is_cut_or_padded_to_the_video(tmp_path, format_name, codec, seconds):
    if format_name not in FORMATS:
        pytest.skip(f"{format_name} is not available here")
    path = str(tmp_path / f"a.{FORMATS[format_name].extension}")
    encode(ImageFrames(make_pattern(8, 32, 32)), path, format_name, 8.0, audio=tone(seconds))
    frames, _, info = decode_av(path)
    assert len(frames) == 8
    samples, rate, got_codec = read_audio(path)
    assert got_codec.startswith(codec)
    assert samples.shape[0] == 2
    duration = samples.shape[1] / rate
    # 1 s of video; encoders add at most one frame of priming/padding (AAC 1024, Opus 960 samples at 48 kHz).
    assert 1.0 - 1e-3 <= duration <= 1.0 + 2048 / rate, duration
    played = samples[:, : int(0.3 * rate)]
    assert np.abs(played).max() > 0.3  # the tone is there
    if seconds < 1.0:
        start = int(0.5 * rate)
        assert np.abs(samples[:, start:start + int(0.3 * rate)]).max() < 0.02  # silence after the clip ends


def test_mono_and_resampled_audio(tmp_path):
    """Opus takes 48 kHz only: a 22.05 kHz mono clip is resampled; it stays mono."""
    if "video/vp9-webm" not in FORMATS:
        pytest.skip("no VP9 here")
    path = str(tmp_path / "m.webm")
    encode(ImageFrames(make_pattern(4, 32, 32)), path, "video/vp9-webm", 8.0,
           audio=tone(0.5, rate=22050, channels=1))
    samples, rate, _ = read_audio(path)
    assert rate == 48000 and samples.shape[0] == 1
    assert abs(samples.shape[1] / rate - 0.5) < 0.03


def test_audio_on_an_image_format_is_left_out(tmp_path):
    path = str(tmp_path / "a.webp")
    result = encode(ImageFrames(make_pattern(2, 16, 16)), path, "image/webp", 8.0, audio=tone(1.0))
    assert result.frames == 2


def test_audio_follows_loop_repeats(tmp_path):
    """loop_count 1 writes the frames twice (2 s): the audio track is 2 s too, padded after the 1.2 s clip."""
    path = str(tmp_path / "l.mp4")
    encode(ImageFrames(make_pattern(8, 32, 32)), path, "video/h264-mp4", 8.0, loop_count=1, audio=tone(1.2))
    samples, rate, _ = read_audio(path)
    assert 2.0 - 1e-3 <= samples.shape[1] / rate <= 2.0 + 2048 / rate
