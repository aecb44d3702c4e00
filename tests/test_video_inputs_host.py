"""The real VideoCombine inside the host (in-process) refuses (issue 11) values outside its declared
ranges (NaN included), filename prefixes that cannot be used and codec options off its allow-list, when
the prompt is queued (VALIDATE_INPUTS, as the host calls it) and again before a frame is decoded, and
writes nothing."""

from __future__ import annotations

import inspect
import os

import pytest
import torch

from tests.test_video_support import make_pattern


class FakeVae:
    """Counts decodes: a refused call must not decode a single latent."""

    def __init__(self):
        self.calls = 0

    def decode(self, samples):
        self.calls += 1
        return torch.zeros(samples.shape[0], samples.shape[2] * 8, samples.shape[3] * 8, 3)


@pytest.fixture
def folders(host, tmp_path):
    fp = host.folder_paths
    old = fp.get_output_directory(), fp.get_temp_directory(), fp.get_input_directory()
    fp.set_output_directory(str(tmp_path / "output"))
    fp.set_temp_directory(str(tmp_path / "temp"))
    fp.set_input_directory(str(tmp_path / "input"))
    os.makedirs(tmp_path / "input")
    try:
        yield tmp_path
    finally:
        fp.set_output_directory(old[0])
        fp.set_temp_directory(old[1])
        fp.set_input_directory(old[2])


def combine_node(host):
    return host.pack.NODE_CLASS_MAPPINGS["VideoCombine"]()


GOOD = dict(frame_rate=8.0, loop_count=0, filename_prefix="run", format="image/gif", pingpong=False, save_output=True)


@pytest.mark.parametrize("change,message", [
    ({"frame_rate": float("nan")}, "VideoCombine: frame_rate is nan; expected a finite number from 0.1 to 240"),
    ({"frame_rate": float("inf")}, "VideoCombine: frame_rate is inf; expected a finite number from 0.1 to 240"),
    ({"frame_rate": 0.0}, "VideoCombine: frame_rate is 0.0; expected a finite number from 0.1 to 240"),
    ({"frame_rate": "8"}, "VideoCombine: frame_rate is '8'; expected a finite number from 0.1 to 240"),
    ({"loop_count": 1000}, "VideoCombine: loop_count is 1000; expected a whole number from 0 to 100"),
    ({"loop_count": 1.5}, "VideoCombine: loop_count is 1.5; expected a whole number from 0 to 100"),
    ({"format": "video/mpeg1"}, "VideoCombine: format is 'video/mpeg1'; expected one of image/webp, image/gif"),
    ({"pingpong": "yes"}, "VideoCombine: pingpong is 'yes'; expected true or false"),
    ({"filename_prefix": 7}, "VideoCombine: filename_prefix is 7; expected text"),
    ({"crf": 64}, "VideoCombine: crf is 64; expected a whole number from 0 to 63"),
    ({"quality": float("nan")}, "VideoCombine: quality is nan; expected a whole number from 0 to 100"),
    ({"preset": "ludicrous"}, "VideoCombine: preset is 'ludicrous'; expected one of ultrafast, superfast"),
    ({"lossless": 1}, "VideoCombine: lossless is 1; expected true or false"),
])
def test_values_outside_the_declared_ranges_are_refused_before_a_frame_is_decoded(host, folders, change, message):
    vae = FakeVae()
    with pytest.raises(ValueError) as info:
        combine_node(host).combine(**{**GOOD, **change}, latent={"samples": torch.zeros(2, 4, 2, 2)}, vae=vae)
    assert str(info.value).startswith(message)
    assert vae.calls == 0
    assert sorted(os.listdir(folders)) == ["input"]  # not even the output folder
    cls = host.pack.NODE_CLASS_MAPPINGS["VideoCombine"]
    named = inspect.getfullargspec(cls.VALIDATE_INPUTS).args  # the inputs the hosts pass when queued
    queued = cls.VALIDATE_INPUTS(**{k: v for k, v in {**GOOD, **change}.items() if k in named})
    if set(change) <= set(named):
        assert queued.startswith(message)  # refused when the prompt is queued, before any node runs
    else:  # a required INT or BOOLEAN: the host's own check, when queued
        assert queued is True and set(change) <= {"loop_count", "pingpong"}


@pytest.mark.parametrize("prefix,message", [
    ("../escape", "leads outside the output folder"),
    ("a\u202egnp.exe", "contains control characters (U+202E RIGHT-TO-LEFT OVERRIDE)"),
    ("x" * 300 + "/run", "filename_prefix: the folder name 'xxxx"),
    ("s" * 201, "filename_prefix: the file name 'ssss"),
])
def test_unusable_prefixes_are_refused_before_a_frame_is_decoded(host, folders, prefix, message):
    vae = FakeVae()
    with pytest.raises(ValueError) as info:
        combine_node(host).combine(**{**GOOD, "filename_prefix": prefix}, latent={"samples": torch.zeros(2, 4, 2, 2)},
                                   vae=vae)
    assert message in str(info.value)
    assert vae.calls == 0
    assert sorted(os.listdir(folders)) == ["input"]
    cls = host.pack.NODE_CLASS_MAPPINGS["VideoCombine"]
    queued = cls.VALIDATE_INPUTS(**{**GOOD, "filename_prefix": prefix})
    assert queued.startswith("VideoCombine: filename_prefix") and message in queued


@pytest.mark.parametrize("change,message", [
    ({"format": "video/h264-mp4", "codec_options": "x264-params=pass=1:stats=/tmp/x"}, "holds a path separator"),
    ({"format": "video/h264-mp4", "codec_options": "x264-params=pass=1:stats=x.log"},
     "x264-params entry 'pass' is not allowed"),
    ({"format": "video/h264-mp4", "codec_options": "passlogfile=p"}, "'passlogfile' is not an encoder option"),
    ({"format": "video/h265-mp4", "codec_options": "x265-params=csv=c.csv:csv-log-level=2"},
     "x265-params entry 'csv' is not allowed"),
    ({"codec_options": "tune=film"}, "codec_options ('tune=film') are for the video formats"),
])
def test_codec_options_are_refused_before_a_frame_is_decoded(host, folders, monkeypatch, change, message):
    from video import FORMATS
    if change.get("format", "image/gif") not in FORMATS:
        pytest.skip(f"{change['format']} is not available here")
    monkeypatch.chdir(folders)  # encoders write relative file names into the working folder
    vae = FakeVae()
    with pytest.raises((ValueError, RuntimeError)) as info:  # reaches the host as a builtin type
        combine_node(host).combine(**{**GOOD, **change}, latent={"samples": torch.zeros(2, 4, 2, 2)}, vae=vae)
    assert message in str(info.value)
    assert vae.calls == 0
    assert sorted(os.listdir(folders)) == ["input"]  # not even the output folder


def test_allowed_codec_options_still_work(host, folders):
    from video import FORMATS
    if "video/h264-mp4" not in FORMATS:
        pytest.skip("no H.264 here")
    from tests.test_video_support import decode_any
    out = combine_node(host).combine(**{**GOOD, "format": "video/h264-mp4"},
                                     images=torch.from_numpy(make_pattern(3, 16, 16)), crf=19, preset="medium",
                                     pix_fmt="auto", quality=90, lossless=False,
                                     codec_options="tune=animation, x264-params=aq-mode=3:no-mbtree")
    assert os.path.basename(out["result"][1]) == "run_00001.mp4"
    assert decode_any(out["result"][1]).shape[0] == 3
    assert sorted(os.listdir(folders / "output")) == ["run_00001.json", "run_00001.mp4"]


def test_queue_time_check_as_the_host_calls_it(host):
    from video import FORMATS
    cls = host.pack.NODE_CLASS_MAPPINGS["VideoCombine"]
    args = inspect.getfullargspec(cls.VALIDATE_INPUTS).args
    assert args == ["cls", "frame_rate", "crf", "preset", "pix_fmt", "quality", "lossless", "codec_options", "format",
                    "filename_prefix"]  # FLOAT, optional and the node's own: the rest keep the host's check
    assert cls.VALIDATE_INPUTS(**{k: v for k, v in GOOD.items() if k in args}) is True
    assert cls.VALIDATE_INPUTS(format="image/gif", codec_options="") is True
    assert cls.VALIDATE_INPUTS(format=None, codec_options="passlogfile=x") is True  # a link: checked when run
    assert cls.VALIDATE_INPUTS(format="video/mpeg1", codec_options="").startswith(
        "VideoCombine: format is 'video/mpeg1'; expected one of image/webp, ")
    if "video/h265-mp4" in FORMATS:
        assert cls.VALIDATE_INPUTS(format="video/h265-mp4", codec_options="x265-params=csv=a.csv").startswith(
            "VideoCombine: codec_options: x265-params entry 'csv' is not allowed")
        assert cls.VALIDATE_INPUTS(format="video/h265-mp4", codec_options="tune=grain") is True
    assert cls.VALIDATE_INPUTS(format="image/webp", codec_options="g=4").startswith(
        "VideoCombine: codec_options ('g=4') are for the video formats")
