"""Bad input gets a clear message; a failed encode (file too large / disk full, bad codec option,
interruption) leaves nothing under the final name, no partial file, and says what failed."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.test_video_support import make_pattern
from video import (FORMATS, HAVE_AV, EncodeError, ImageFrames, OutputPathError, encode, expand_tokens,
                   next_free_name, resolve_prefix, save)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_av = pytest.mark.skipif(not HAVE_AV, reason="PyAV is not installed")
FRAMES = make_pattern(4, 32, 32)


def leftovers(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def attempt(tmp_path, format_name="image/webp", frames=FRAMES, **kwargs):
    spec = FORMATS.get(format_name)
    ext = spec.extension if spec else "bin"
    path = str(tmp_path / "out" / (f"clip.{ext}" if ext else "clip"))
    kwargs.setdefault("frame_rate", 8.0)
    rate = kwargs.pop("frame_rate")
    with pytest.raises((EncodeError, OutputPathError)) as info:
        encode(ImageFrames(frames), path, format_name, rate, **kwargs)
    assert leftovers(tmp_path / "out") == [], "a failed encode left files behind"
    return str(info.value), path


# ---------------------------------------------------------------------------------------------
# Bad inputs

@pytest.mark.parametrize("rate", [-8.0, 0, float("nan"), float("inf"), "fast"])
def test_bad_frame_rate(tmp_path, rate):
    message, _ = attempt(tmp_path, frame_rate=rate)
    expected = "a number of" if isinstance(rate, str) else "a positive number of"
    assert f"frame_rate must be {expected} frames per second, got {rate!r}" == message


def test_negative_loop_count(tmp_path):
    message, _ = attempt(tmp_path, loop_count=-1)
    assert message == "loop_count must be a whole number, 0 (forever) or more, got -1"


def test_unknown_format(tmp_path):
    message, _ = attempt(tmp_path, format_name="video/mpeg1")
    assert message.startswith("unknown format 'video/mpeg1'; choose one of image/webp, image/gif")


def test_unknown_option_name(tmp_path):
    message, _ = attempt(tmp_path, options={"qualty": 80})
    assert message == ("unknown option 'qualty' for image/webp; the options are crf, preset, pix_fmt, quality, "
                       "lossless, codec_options")


def test_bad_quality(tmp_path):
    message, _ = attempt(tmp_path, options={"quality": 101})
    assert message == "quality 101 is out of range for image/webp: use 0..100"


def test_codec_options_on_a_pillow_format(tmp_path):
    message, _ = attempt(tmp_path, format_name="image/gif", options={"codec_options": "tune=animation"})
    assert "codec_options ('tune=animation') are for the video formats; image/gif" in message


def test_not_an_image_batch(tmp_path):
    with pytest.raises(ValueError, match=r"expected an IMAGE batch shaped \(frames, height, width, 1\|3\|4\)"):
        ImageFrames(np.zeros((4, 32, 32, 2), np.float32))
    with pytest.raises(ValueError, match="at least one frame"):
        ImageFrames(np.zeros((0, 32, 32, 3), np.float32))


def test_failed_encode_removes_the_folders_it_made(tmp_path):
    (tmp_path / "out").mkdir()
    path = str(tmp_path / "out" / "new" / "deeper" / "clip.webp")
    with pytest.raises(EncodeError):
        encode(ImageFrames(FRAMES), path, "image/webp", -1.0)
    def fail(done, total):
        raise RuntimeError("stop")
    with pytest.raises(RuntimeError):
        encode(ImageFrames(FRAMES), path, "image/webp", 8.0, progress=fail)
    assert os.listdir(tmp_path / "out") == []


@pytest.mark.parametrize("prefix,message", [
    ("../escape", "leads outside the output folder"),
    ("clips/../../escape", "leads outside the output folder"),
    ("/etc/passwd", "must be relative to the output folder"),
    ("C:/Windows/x", "must be relative to the output folder"),
    ("", "must end with a file name"),
    ("clips/", "must end with a file name"),
    ("bad\nname", "contains control characters"),
])
def test_bad_prefix(tmp_path, prefix, message):
    with pytest.raises(OutputPathError, match=message):
        save(ImageFrames(FRAMES), str(tmp_path / "out"), prefix, "image/webp", 8.0)
    assert leftovers(tmp_path / "out") == []


def test_symlink_out_of_the_output_folder_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "out" / "link")
    with pytest.raises(OutputPathError, match="leads outside the output folder"):
        resolve_prefix(str(tmp_path / "out"), "link/clip")


@needs_av
def test_crf_out_of_range_for_the_codec(tmp_path):
    message, _ = attempt(tmp_path, format_name="video/h264-mp4", options={"crf": 60})
    assert message == "crf 60 is out of range for video/h264-mp4 (libx264): use 0..51, lower is better quality"


@needs_av
def test_pix_fmt_the_format_cannot_take(tmp_path):
    message, _ = attempt(tmp_path, format_name="video/vp9-webm", options={"pix_fmt": "yuv422p10le"})
    assert message == ("pix_fmt 'yuv422p10le' is not available for video/vp9-webm; choose auto or one of yuv420p, "
                       "yuv444p, yuva420p")


@needs_av
def test_unknown_preset(tmp_path):
    message, _ = attempt(tmp_path, format_name="video/h264-mp4", options={"preset": "ludicrous"})
    assert message.startswith("preset 'ludicrous' is not one of ultrafast, superfast")


@needs_av
def test_bad_audio(tmp_path):
    message, _ = attempt(tmp_path, format_name="video/h264-mp4", audio={"samples": [0.0]})
    assert "audio must be the AUDIO dict" in message


# ---------------------------------------------------------------------------------------------
# Failed encodes

@needs_av
def test_unknown_codec_option_is_refused_and_nothing_written(tmp_path):
    # Refused by the allow-list (video/codec_options.py) before the encoder is opened.
    message, path = attempt(tmp_path, format_name="video/h264-mp4", options={"codec_options": "tune=animation, bogus=1"})
    assert message.startswith("codec_options: 'bogus' is not an encoder option this pack passes on; ")
    assert "Allowed for libx264: " in message and ", tune, " in message


@needs_av
def test_bad_codec_option_value_names_the_file_and_the_problem(tmp_path):
    # A value of the wrong shape is refused by the allow-list, before the encoder is opened ...
    message, path = attempt(tmp_path, format_name="video/h264-mp4", options={"codec_options": "tune=sleepy"})
    assert message == ("codec_options: tune='sleepy' is not a comma-separated list of film, animation, grain, "
                       "stillimage, psnr, ssim, fastdecode, zerolatency")
    # ... a combination the encoder itself refuses names the file, the settings and the encoder's reason.
    message, path = attempt(tmp_path, format_name="video/h264-mp4",
                            options={"codec_options": "profile=baseline", "pix_fmt": "yuv444p"})
    assert message.startswith(f"could not write {path}: the libx264 encoder refused its settings (")
    assert "profile=baseline" in message and "baseline" in message.split("):", 1)[1]


@needs_av
def test_malformed_codec_options(tmp_path):
    message, _ = attempt(tmp_path, format_name="video/h264-mp4", options={"codec_options": "tune"})
    assert "codec_options entry 'tune' is not key=value" in message


class Stop(Exception):
    """Stands for the host's interruption (comfy.model_management.InterruptProcessingException)."""


@pytest.mark.parametrize("format_name", ["image/webp", "image/gif", "image/apng", "image/png-sequence"]
                         + (["video/h264-mp4", "video/prores-mov"] if HAVE_AV else []))
def test_interrupted_encode_leaves_nothing(tmp_path, format_name):
    def progress(done, total):
        if done == 2:
            raise Stop("cancelled by the user")
    spec = FORMATS[format_name]
    out = tmp_path / "out"
    path = str(out / (f"clip.{spec.extension}" if spec.extension else "clip"))
    with pytest.raises(Stop):  # the interruption itself comes through, not an encode error
        encode(ImageFrames(FRAMES), path, format_name, 8.0, progress=progress)
    assert leftovers(out) == []


def test_progress_reports_every_frame(tmp_path):
    calls = []
    encode(ImageFrames(FRAMES), str(tmp_path / "p.webp"), "image/webp", 8.0, pingpong=True,
           progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 6) for i in range(1, 7)]


CHILD = textwrap.dedent("""
    import resource, signal, sys
    sys.path.insert(0, {root!r})
    import numpy as np
    from video import EncodeError, ImageFrames, encode
    frames = np.random.default_rng(0).random((8, 96, 96, 3), dtype=np.float32)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # writes past the limit fail with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (30000, 30000))
    try:
        encode(ImageFrames(frames), {path!r}, {fmt!r}, 8.0, options={options!r})
    except EncodeError as e:
        print("ENCODE-ERROR:", e)
    else:
        print("NO ERROR")
""")


@pytest.mark.parametrize("format_name,options", [
    ("image/webp", {"lossless": True}), ("image/gif", {}), ("image/apng", {}), ("image/png-sequence", {}),
    ("video/h264-mp4", {"crf": 0}), ("video/prores-mov", {}),
])
def test_disk_full_leaves_nothing_and_says_so(tmp_path, format_name, options):
    """The file-size limit (RLIMIT_FSIZE) makes writes fail part-way, as a full disk does."""
    if format_name not in FORMATS:
        pytest.skip(f"{format_name} is not available here")
    spec = FORMATS[format_name]
    out = tmp_path / "out"
    out.mkdir()
    path = str(out / (f"clip.{spec.extension}" if spec.extension else "clip"))
    if spec.is_sequence:  # per-frame files stay small: the limit has to bite on one frame
        options = {}
    script = CHILD.format(root=ROOT, path=path, fmt=format_name, options=options)
    if spec.is_sequence:
        script = script.replace("(30000, 30000)", "(20000, 20000)").replace("(8, 96, 96, 3)", "(4, 128, 128, 3)")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "ENCODE-ERROR: could not write " + path + ": " in run.stdout, run.stdout + run.stderr
    assert "File too large" in run.stdout
    assert leftovers(out) == []


# ---------------------------------------------------------------------------------------------
# Names

def test_date_tokens_as_the_frontend_formats_them():
    now = datetime.datetime(2026, 3, 7, 9, 5, 4)
    assert expand_tokens("%date:yyyy-MM-dd%/run", now) == "2026-03-07/run"
    assert expand_tokens("%date:yy.M.d_h-m-s%", now) == "26.3.7_9-5-4"
    assert expand_tokens("%date:hhmmss%", now) == "090504"
    assert expand_tokens("%year%%month%%day%_%hour%%minute%%second%", now) == "20260307_090504"
    assert expand_tokens("%width%x%height%", now, 512, 288) == "512x288"
    assert expand_tokens("%KSampler.seed%_clip", now) == "%KSampler.seed%_clip"


def test_date_token_makes_a_subfolder(tmp_path):
    now = datetime.datetime(2026, 3, 7, 9, 5, 4)
    result = save(ImageFrames(FRAMES), str(tmp_path), "AnimateDiff/%date:yyyy-MM-dd%/run", "image/webp", 8.0,
                  now=now)
    assert result.path == str(tmp_path / "AnimateDiff" / "2026-03-07" / "run_00001.webp")


def test_counter_ignores_partial_files(tmp_path):
    (tmp_path / ".clip_00007.webp.partial").write_bytes(b"")
    (tmp_path / "clip_00002.webp").write_bytes(b"")
    (tmp_path / "clip_extra_00009.webp").write_bytes(b"")
    assert next_free_name(str(tmp_path), "clip", "webp") == "clip_00003.webp"
