"""Faithful colour: ramps and skin-tone patches written in every format, decoded back (PyAV; Pillow for
WebP), compared with the input. Y'CbCr streams must be tagged BT.709 / limited range, and decoding with
those tags must give the input back: mean abs error <= 2/255 at lossless-ish settings, and no systematic
shift (|mean signed error| < 0.5/255 per channel) in any format."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_video_support import decode_any, decode_av, make_pattern
from video import FORMATS, HAVE_AV, ImageFrames, encode
from video.colour import PIX_FMT_LAYOUT, prepare, rgb_to_planes, ycbcr_to_rgb

FRAMES = make_pattern(8, 64, 64)
REFERENCE = np.rint(FRAMES * 255.0)


def errors(tmp_path, format_name, options):
    spec = FORMATS[format_name]
    name = "c" + "".join(f"_{k}{v}" for k, v in sorted(options.items()))
    path = str(tmp_path / (f"{name}.{spec.extension}" if spec.extension else name))
    encode(ImageFrames(FRAMES), path, format_name, 8.0, options=options)
    decoded = decode_any(path)[..., :3].astype(np.float64)
    assert decoded.shape == REFERENCE.shape
    diff = decoded - REFERENCE
    return path, np.abs(diff).mean(), diff.reshape(-1, 3).mean(axis=0)


def available(cases):
    return [c for c in cases if c[0] in FORMATS]


# Lossless-ish: no loss beyond rounding and (for 4:2:0) chroma subsampling.
LOSSLESS_ISH = available([
    ("image/webp", {"lossless": True}),
    ("image/apng", {}),
    ("image/png-sequence", {}),
    ("video/h264-mp4", {"crf": 0}),
    ("video/h264-mp4", {"crf": 0, "pix_fmt": "yuv444p"}),
    ("video/h264-mp4", {"crf": 0, "pix_fmt": "yuv420p10le"}),
    ("video/h265-mp4", {"crf": 0}),
    ("video/vp9-webm", {"crf": 0}),
    ("video/vp9-webm", {"crf": 0, "pix_fmt": "yuv444p"}),
    ("video/prores-mov", {}),
])

# Every format at its default settings (what the node sends unless changed), plus 10-bit variants.
DEFAULT_SETTINGS = available([
    ("image/webp", {}), ("image/gif", {}), ("image/apng", {}), ("image/png-sequence", {}),
    ("video/h264-mp4", {}), ("video/h264-mp4", {"pix_fmt": "yuv420p10le"}), ("video/h265-mp4", {}),
    ("video/h265-mp4", {"pix_fmt": "yuv420p10le"}), ("video/vp9-webm", {}), ("video/av1-webm", {}),
    ("video/av1-webm", {"pix_fmt": "yuv420p10le"}), ("video/prores-mov", {}),
])


@pytest.mark.parametrize("format_name,options", LOSSLESS_ISH, ids=lambda v: str(v))
def test_lossless_ish_settings_give_the_colours_back(tmp_path, format_name, options):
    _, mae, signed = errors(tmp_path, format_name, options)
    assert mae <= 2.0, f"mean abs error {mae:.3f}/255"
    assert np.all(np.abs(signed) < 0.5), f"mean signed error {signed}/255"


@pytest.mark.parametrize("format_name,options", DEFAULT_SETTINGS, ids=lambda v: str(v))
def test_no_systematic_colour_shift(tmp_path, format_name, options):
    _, mae, signed = errors(tmp_path, format_name, options)
    assert np.all(np.abs(signed) < 0.5), f"mean signed error {signed}/255 (mean abs {mae:.2f})"
    assert mae < 4.0


@pytest.mark.skipif(not HAVE_AV, reason="PyAV is not installed")
@pytest.mark.parametrize("format_name", [n for n, s in FORMATS.items() if s.is_video])
def test_video_streams_are_tagged_bt709_limited_range(tmp_path, format_name):
    path = str(tmp_path / f"t.{FORMATS[format_name].extension}")
    encode(ImageFrames(FRAMES[:2]), path, format_name, 8.0)
    _, _, info = decode_av(path)
    assert (info["colorspace"], info["color_primaries"], info["color_trc"]) == (1, 1, 1)  # BT.709
    assert info["color_range"] == 1  # MPEG / limited


@pytest.mark.skipif(not HAVE_AV, reason="PyAV is not installed")
@pytest.mark.parametrize("format_name", ["video/h264-mp4", "video/vp9-webm", "image/webp", "image/gif"])
def test_skin_tones_survive_default_settings(tmp_path, format_name):
    """Each patch's mean within 3/255 at the (lossy) default settings."""
    if format_name not in FORMATS:
        pytest.skip(f"{format_name} is not available here")
    frames = make_pattern(4, 128, 128)
    spec = FORMATS[format_name]
    path = str(tmp_path / f"skin.{spec.extension}")
    encode(ImageFrames(frames), path, format_name, 8.0)
    decoded = decode_any(path)[..., :3].astype(np.float64)
    tones = [(0.94, 0.76, 0.64), (0.80, 0.59, 0.46), (0.55, 0.38, 0.26), (0.36, 0.22, 0.15)]
    for k, tone in enumerate(tones):  # the inside of each 16x32 patch (make_pattern's layout)
        top = 16 + k * 25
        patch = decoded[:, top + 4:top + 12, 72:88].reshape(-1, 3).mean(axis=0)
        assert np.allclose(patch, np.array(tone) * 255, atol=3.0), (k, patch, np.array(tone) * 255)


def test_bt709_matrix_on_known_colours():
    """Limited-range BT.709 code values of white, black and the primaries (ITU-R BT.709-6 table 3)."""
    colours = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128]]],
                       np.uint8)
    colours = np.repeat(np.repeat(colours, 2, axis=0), 1, axis=1)
    y, cb, cr = rgb_to_planes(colours, "yuv444p")
    assert list(y[0]) == [235, 16, 63, 173, 32, 126]
    assert list(cb[0]) == [128, 128, 102, 42, 240, 128]
    assert list(cr[0]) == [128, 128, 240, 26, 118, 128]
    y10, _, _ = rgb_to_planes(colours, "yuv444p10le")
    assert (y10[0, 0], y10[0, 1]) == (940, 64)


@pytest.mark.parametrize("pix_fmt", sorted(PIX_FMT_LAYOUT))
def test_conversion_round_trip_has_no_bias(pix_fmt):
    rgb = np.rint(FRAMES[0] * 255).astype(np.uint8)
    back = ycbcr_to_rgb(prepare(rgb, pix_fmt), pix_fmt)[:64, :64] * 255.0
    signed = (back - rgb).reshape(-1, 3).mean(axis=0)
    assert np.all(np.abs(signed) < 0.5)


def test_gif_of_large_frames_keeps_its_colours(tmp_path):
    """Frames above 128x128 get their palette from a box-filtered copy; the dithered result must not drift."""
    frames = make_pattern(2, 256, 320)
    path = str(tmp_path / "big.gif")
    encode(ImageFrames(frames), path, "image/gif", 8.0)
    diff = decode_any(path)[..., :3].astype(np.float64) - np.rint(frames * 255)
    assert np.all(np.abs(diff.reshape(-1, 3).mean(axis=0)) < 0.5)
    assert np.abs(diff).mean() < 6.0
