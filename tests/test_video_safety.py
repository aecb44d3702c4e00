"""What VideoCombine refuses and where it writes (issue 11), pure: codec options on an allow-list (no
option can name a file, nothing is written outside the output folder)."""

from __future__ import annotations

import os

import pytest

from tests.test_video_support import decode_any, make_pattern
from video import FORMATS, HAVE_AV, EncodeError, ImageFrames, check_codec_options, save
from video import codec_options as co

needs_av = pytest.mark.skipif(not HAVE_AV, reason="PyAV is not installed")
FRAMES = make_pattern(3, 16, 16)


def tree(folder) -> list[str]:
    """Every path under ``folder``, relative, sorted (files and folders)."""
    out = []
    for base, dirs, files in os.walk(folder):
        for name in dirs + files:
            out.append(os.path.relpath(os.path.join(base, name), folder))
    return sorted(out)


# ---------------------------------------------------------------------------------------------
# Codec options: the allow-list

ATTACKS = [  # (format, codec_options, what the message says)
    ("video/h264-mp4", "x264-params=pass=1:stats={abs}/stats.log", "holds a path separator"),
    ("video/h264-mp4", "x264-params=pass=1", "x264-params entry 'pass' is not allowed"),
    ("video/h264-mp4", "x264-params=stats=stats.log", "x264-params entry 'stats' is not allowed"),
    ("video/h264-mp4", "x264-params=qpfile=qp.txt", "x264-params entry 'qpfile' is not allowed"),
    ("video/h264-mp4", "x264-params=dump-yuv=dump.yuv", "x264-params entry 'dump-yuv' is not allowed"),
    ("video/h264-mp4", "x264-params=cqmfile=m.cfg", "x264-params entry 'cqmfile' is not allowed"),
    ("video/h264-mp4", "x264-params=zones=0,10,q=20/11,20,b=2", "x264-params entry 'zones' is not allowed"),
    ("video/h264-mp4", "x264-params=aq-mode=1:stats='{abs}/q.log'", "holds a path separator"),
    ("video/h264-mp4", "x264-params=aq-mode=1:stats='q.log'", "may not hold quotes"),
    ("video/h264-mp4", "x264opts=stats=s.log", "'x264opts' is not an encoder option this pack passes on"),
    ("video/h264-mp4", "passlogfile={abs}/plog", "holds a path separator"),
    ("video/h264-mp4", "passlogfile=plog", "'passlogfile' is not an encoder option this pack passes on"),
    ("video/h264-mp4", "stats=s.log", "'stats' is not an encoder option"),
    ("video/h264-mp4", "flags=+pass1", "'flags' is not an encoder option"),
    ("video/h264-mp4", "x265-params=csv=c.csv", "'x265-params' is for another encoder"),
    ("video/h265-mp4", "x265-params=csv={abs}/x265.csv:csv-log-level=2", "holds a path separator"),
    ("video/h265-mp4", "x265-params=csv=x265.csv:csv-log-level=2", "x265-params entry 'csv' is not allowed"),
    ("video/h265-mp4", "x265-params=pass=1", "x265-params entry 'pass' is not allowed"),
    ("video/h265-mp4", "x265-params=analysis-save=a.dat", "x265-params entry 'analysis-save' is not allowed"),
    ("video/h265-mp4", "x265-params=qpfile=q.txt", "x265-params entry 'qpfile' is not allowed"),
    ("video/h265-mp4", "x265-params=zonefile=z.txt", "x265-params entry 'zonefile' is not allowed"),
    ("video/h265-mp4", "x265-params=recon=r.yuv", "x265-params entry 'recon' is not allowed"),
    ("video/h265-mp4", "x265-params=dolby-vision-rpu=r.bin", "x265-params entry 'dolby-vision-rpu' is not allowed"),
    ("video/h265-mp4", "x265-params=scaling-list=s.txt", "x265-params entry 'scaling-list' is not allowed"),
    ("video/h265-mp4", "x265-params=log-level=error:lambda-file=l.txt", "entry 'lambda-file' is not allowed"),
    ("video/vp9-webm", "passlogfile=plog", "'passlogfile' is not an encoder option"),
    ("video/av1-webm", "svtav1-params=stat-file=s.stat", "svtav1-params entry 'stat-file' is not allowed"),
    ("video/av1-webm", "svtav1-params=fgs-table=t.tbl", "svtav1-params entry 'fgs-table' is not allowed"),
    ("video/prores-mov", "vendor=..{sep}x", "holds a path separator"),
    ("video/prores-mov", "vendor=apl0\\x", "holds a path separator"),
]


@needs_av
@pytest.mark.parametrize("format_name,options,message", ATTACKS)
def test_options_that_could_write_files_are_refused_and_nothing_is_written(tmp_path, monkeypatch, format_name,
                                                                           options, message):
    if format_name not in FORMATS:
        pytest.skip(f"{format_name} is not available here")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cwd = tmp_path / "cwd"  # encoders write relative names (x264_2pass.log, ...) into the working folder
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    options = options.format(abs=str(elsewhere), sep=os.sep)
    spec = FORMATS[format_name]
    with pytest.raises(EncodeError) as info:
        save(ImageFrames(FRAMES), str(tmp_path / "out"), "clip", format_name, 8.0,
             options={"codec_options": options}, metadata={"prompt": {}})
    assert message in str(info.value)
    assert str(info.value).startswith("codec_options: ")
    assert tree(tmp_path) == ["cwd", "elsewhere"], "something was written"
    if "not allowed" in message or "not an encoder option" in message:
        allowed = co.allowed_options(spec.codec)
        listing = co.PARAMS[next(k for k in co.PARAMS if k in options)] if "entry" in message else allowed
        assert ", ".join(sorted(listing)) in str(info.value)  # the message lists what is allowed


@needs_av
def test_the_attacks_of_the_issue_leave_the_target_files_alone(tmp_path):
    target = tmp_path / "victim.txt"
    target.write_text("precious")
    for fmt, options in [("video/h264-mp4", f"x264-params=pass=1:stats={target}"),
                         ("video/h265-mp4", f"x265-params=csv={target}:csv-log-level=2")]:
        if fmt not in FORMATS:
            continue
        with pytest.raises(EncodeError, match="path separator"):
            save(ImageFrames(FRAMES), str(tmp_path / "out"), "a", fmt, 8.0, options={"codec_options": options})
    assert target.read_text() == "precious"
    assert sorted(os.listdir(tmp_path)) == ["victim.txt"]


def test_allowed_options_are_checked_and_normalised():
    out = check_codec_options("libx264", "tune=animation, g=48, bf=2, x264-params=deblock=-1,-1:aq-mode=3:"
                                         "psy-rd=1.0,0.15:no-mbtree:Open_GOP=1, deblock=-1:-1, partitions=i8x8,i4x4")
    assert out == {"tune": "animation", "g": "48", "bf": "2",
                   "x264-params": "deblock=-1,-1:aq-mode=3:psy-rd=1.0,0.15:mbtree=0:open-gop=1",
                   "deblock": "-1:-1", "partitions": "i8x8,i4x4"}
    assert check_codec_options("libx265", {"x265-params": "bframes=0:no-sao:keyint=48", "tune": "grain"}) == {
        "x265-params": "bframes=0:sao=0:keyint=48", "tune": "grain"}
    assert check_codec_options("libsvtav1", "svtav1-params=tune=0:film-grain=8") == {
        "svtav1-params": "tune=0:film-grain=8"}
    assert check_codec_options("prores_ks", "profile=hq, vendor=apl0") == {"profile": "hq", "vendor": "apl0"}
    assert check_codec_options("libx264", "") == {} and check_codec_options("libx264", None) == {}


@pytest.mark.parametrize("codec,options,message", [
    ("libx264", "g=-5", "codec_options: g='-5' is not a whole number from 0 to 100000"),
    ("libx264", "g=1e9", "codec_options: g='1e9' is not a whole number from 0 to 100000"),
    ("libx264", "profile=ultra", "codec_options: profile='ultra' is not one of baseline, main, high"),
    ("libx264", "x264-params=bframes=99", "codec_options: x264-params entry bframes='99' is not a whole number "
                                          "from 0 to 16"),
    ("libx264", "x264-params=no-bframes", "codec_options: x264-params entry 'no-bframes' needs a value"),
    ("libx264", "x264-params=aq-mode", "codec_options: x264-params entry 'aq-mode' needs a value"),
    ("libx264", "preset=slow", "codec_options: set preset with the preset input, not in codec_options"),
    ("libx264", "crf=10", "codec_options: set crf with the crf input, not in codec_options"),
    ("libx264", "tune", "codec_options entry 'tune' is not key=value"),
    ("libx264", "=5", "codec_options entry '=5' is not key=value"),
    ("libx265", "x265-params=log-level=error\x00", "codec_options: x265-params may not hold quotes or control"),
    ("libvpx-vp9", "deadline=fastest", "codec_options: deadline='fastest' is not one of best, good, realtime"),
])
def test_values_of_the_wrong_shape_are_refused(codec, options, message):
    with pytest.raises(co.CodecOptionError) as info:
        check_codec_options(codec, options)
    assert str(info.value).startswith(message)


def test_an_unknown_encoder_takes_no_options():
    with pytest.raises(co.CodecOptionError, match="Allowed for libfoo: none"):
        check_codec_options("libfoo", "g=1")


def _sample(shape):
    """A value of the right shape for each allowed option (for the check below)."""
    if isinstance(shape, co.Either):
        return _sample(shape.kinds[0])
    if isinstance(shape, (co.Int, co.Num)):
        return str(max(shape.lo, min(shape.hi, 2)))
    if isinstance(shape, co.Bool):
        return "1"
    if isinstance(shape, co.Choice):
        return shape.choices[-1] if shape.choices[0] in ("none", "auto") else shape.choices[0]
    if isinstance(shape, co.Words):
        return shape.words[1] if shape.words[0] == "all" else shape.words[0]
    if isinstance(shape, co.Pair):
        return _sample(shape.inner)
    return {co.Rate: "1M", co.Tag: "apl0"}[type(shape)]


@needs_av
def test_every_allowed_option_is_one_the_encoder_knows():
    """Guards the allow-list against typos: each option (and each *-params entry) is taken by the encoder
    it is listed for (not left over as unknown, no 'unknown option' / 'error parsing' in its log)."""
    import av
    import av.logging
    from fractions import Fraction
    unknown = []
    previous = av.logging.get_level()
    av.logging.set_level(av.logging.WARNING)
    try:
        for spec in FORMATS.values():
            if not spec.is_video:
                continue
            for key, shape in co.allowed_options(spec.codec).items():
                if shape is None:
                    items = [(key, f"{sub}={_sample(s)}", sub) for sub, s in co.PARAMS[key].items()]
                else:
                    items = [(key, _sample(shape), key)]
                for option, value, name in items:
                    cc = av.CodecContext.create(spec.codec, "w")
                    cc.width, cc.height, cc.pix_fmt, cc.time_base = 64, 64, spec.pix_fmts[0], Fraction(1, 8)
                    cc.options = {option: value, **({"b": "1M"} if option in ("maxrate", "bufsize") else {})}
                    opened = True
                    with av.logging.Capture() as logs:
                        try:
                            cc.open(strict=False)
                        except Exception:
                            opened = False  # a value this tiny stream cannot take (the name was read)
                    said = " ".join(line for level, _, line in logs if level <= av.logging.WARNING).lower()
                    if (opened and option in dict(cc.options or {})) or (
                            ("unknown option" in said or "error parsing option" in said) and name in said):
                        unknown.append(f"{spec.codec}: {option}={value}")
    finally:
        av.logging.set_level(previous)
    assert unknown == [], "\n".join(unknown)


@needs_av
def test_allowed_options_encode_and_only_the_output_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = save(ImageFrames(make_pattern(4, 32, 32)), str(tmp_path / "out"), "ok", "video/h264-mp4", 8.0,
                  options={"codec_options": "tune=animation, g=4, x264-params=aq-mode=3:psy-rd=1.0,0.15:"
                                            "no-mbtree, deblock=-1:-1"}, metadata={"prompt": {}})
    assert decode_any(result.path).shape[0] == 4
    assert tree(tmp_path) == ["out", "out/ok_00001.json", "out/ok_00001.mp4"]
