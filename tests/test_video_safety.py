"""What VideoCombine refuses and where it writes (issue 11), pure: codec options on an allow-list (no
option can name a file, nothing is written outside the output folder), output names reserved atomically
across processes, stale partial files of killed writers cleaned, spoofing and over-long names in
filename_prefix refused and folders that cannot be made explained, with clear messages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.test_video_support import decode_any, make_pattern
from video import (FORMATS, HAVE_AV, EncodeError, ImageFrames, OutputPathError, check_codec_options, resolve_prefix,
                   save)
from video import codec_options as co
from video import outputs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


# ---------------------------------------------------------------------------------------------
# Names: reserved atomically, across processes

CONCURRENT_WRITER = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, {root!r})
    from tests.test_video_support import make_pattern
    from video import ImageFrames, save
    frames = make_pattern(3, 16, 16)
    while time.time() < {start_at!r}:
        time.sleep(0.001)
    written = []
    for i in range({count!r}):
        result = save(ImageFrames(frames), {folder!r}, "run", {fmt!r}, 8.0, metadata={{"writer": {writer!r}, "index": i}})
        written.append((result.path, result.sidecar))
    print(json.dumps(written))
""")


@pytest.mark.parametrize("formats", [("image/webp", "image/webp"), ("image/webp", "image/gif"),
                                     ("image/png-sequence", "image/apng")])
def test_two_processes_writing_one_prefix_never_share_a_file(tmp_path, formats):
    """Two separate processes (as two servers sharing one output folder) save under one prefix at once."""
    count = 8 if "image/png-sequence" in formats else 25
    folder = str(tmp_path / "out")
    os.makedirs(folder)
    start_at = time.time() + 4.0  # both start together, once the interpreters are up
    children = [subprocess.Popen([sys.executable, "-c", CONCURRENT_WRITER.format(
        root=ROOT, start_at=start_at, count=count, folder=folder, fmt=fmt, writer=w)], cwd=str(tmp_path),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w, fmt in enumerate(formats)]
    results = []
    try:
        for child in children:
            out, err = child.communicate(timeout=240)
            assert child.returncode == 0, err[-3000:]
            results.append([tuple(pair) for pair in json.loads(out)])
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    paths = [p for written in results for p, _ in written]
    sidecars = [s for written in results for _, s in written]
    assert len(set(paths)) == len(paths) == 2 * count
    assert len(set(sidecars)) == len(sidecars)
    stems = [os.path.splitext(os.path.basename(p))[0] if not os.path.isdir(p) else os.path.basename(p)
             for p in paths]
    assert len(set(stems)) == len(stems), "two outputs share a number (and so a sidecar)"
    names = set(os.listdir(folder))
    assert names == {os.path.basename(p) for p in paths + sidecars}, "partial or foreign files left"
    for writer, written in enumerate(results):
        for index, (path, sidecar) in enumerate(written):
            assert decode_any(path).shape[0] == 3
            assert json.load(open(sidecar)) == {"writer": writer, "index": index}


def test_a_numbered_save_never_replaces_a_file_that_appears_meanwhile(tmp_path, monkeypatch):
    folder = tmp_path / "out"
    folder.mkdir()
    from video import combine
    real = combine.output_path

    def racing(base_dir, prefix, spec, *a, **k):
        path = real(base_dir, prefix, spec, *a, **k)
        # another writer takes this number (and the next one's sidecar) while we encode
        (folder / os.path.basename(path)).write_bytes(b"theirs")
        (folder / "clip_00002.json").write_bytes(b"theirs too")
        return path
    monkeypatch.setattr(combine, "output_path", racing)
    result = save(ImageFrames(FRAMES), str(folder), "clip", "image/gif", 8.0, metadata={"prompt": {}})
    assert os.path.basename(result.path) == "clip_00003.gif"
    assert (folder / "clip_00001.gif").read_bytes() == b"theirs"
    assert (folder / "clip_00002.json").read_bytes() == b"theirs too"
    assert sorted(os.listdir(folder)) == ["clip_00001.gif", "clip_00002.json", "clip_00003.gif", "clip_00003.json"]


def test_temporary_names_are_unique_per_writer_and_follow_the_pattern(tmp_path):
    a = outputs.partial_path(str(tmp_path), "run_00001.webp")
    b = outputs.partial_path(str(tmp_path), "run_00001.webp")
    try:
        assert a != b
        for p in (a, b):
            m = outputs.PARTIAL.match(os.path.basename(p))
            assert m and m.group("label") == "run_00001.webp" and int(m.group("pid")) == os.getpid()
        long = outputs.partial_path(str(tmp_path), "x" * 400 + ".webp")
        assert len(os.path.basename(long).encode()) <= 255 and outputs.PARTIAL.match(os.path.basename(long))
    finally:
        for p in (a, b, long):
            outputs.release(p)


# ---------------------------------------------------------------------------------------------
# Stale partial files

def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def make_partial(folder, name, age=0.0, folder_kind=False):
    path = os.path.join(folder, name)
    if folder_kind:
        os.mkdir(path)
        with open(os.path.join(path, "frame_00000.png"), "wb") as f:
            f.write(b"x")
    else:
        with open(path, "wb") as f:
            f.write(b"partial")
    if age:
        t = time.time() - age
        os.utime(path, (t, t))
    return path


def test_stale_partials_of_our_pattern_only_are_removed(tmp_path):
    folder = str(tmp_path)
    old = outputs.STALE_AFTER + 60
    dead = dead_pid()
    live_child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        removed_expected = {
            make_partial(folder, f".run_00001.webp.{dead}.0123456789ab.partial", old),
            make_partial(folder, f".run_00002.{dead}.00000000aaaa.partial", old, folder_kind=True),
            make_partial(folder, f".run_00003.json.{os.getpid()}.0123456789ab.partial", old),  # ours, not in use
            make_partial(folder, ".run_00004.mp4.partial", old),  # the older pattern, no pid
            make_partial(folder, ".run_00004_preview_00001.webp.partial", old),
        }
        live = outputs.partial_path(folder, "run_00005.webp")  # this process is writing it
        kept = {
            make_partial(folder, f".run_00010.webp.{dead}.0123456789ab.partial"),  # recent: may still be written
            make_partial(folder, f".run_00011.webp.{live_child.pid}.0123456789ab.partial", old),  # writer alive
            make_partial(folder, os.path.basename(live), old),
            make_partial(folder, ".run_00012.mp4.partial", 60),  # older pattern, recent
            # not our pattern: never touched, however old
            make_partial(folder, ".something.partial", old),
            make_partial(folder, ".run_00013.webp.partial.bak", old),
            make_partial(folder, f".run_00014.webp.{dead}.NOTHEX123456.partial", old),
            make_partial(folder, f".run_00015.webp.0.0123456789ab.partial", old),
            make_partial(folder, "run_00016.webp", old),
            make_partial(folder, f"run_00017.webp.{dead}.0123456789ab.partial", old),  # not hidden
            make_partial(folder, ".run_00018.txt.partial", old),
        }
        target = make_partial(folder, "target.txt", old)
        link = os.path.join(folder, f".run_00020.webp.{dead}.0123456789ab.partial")
        os.symlink(target, link)
        t = time.time() - old
        os.utime(link, (t, t), follow_symlinks=False)
        kept |= {target, link}
        assert set(outputs.stale_partials(folder)) == removed_expected
        assert set(outputs.remove_stale_partials(folder)) == removed_expected
        assert set(os.path.join(folder, n) for n in os.listdir(folder)) == kept
        assert open(target, "rb").read() == b"partial"
    finally:
        live_child.kill()
        live_child.wait()
        outputs.release(live)


def test_save_cleans_stale_partials_before_writing(tmp_path):
    folder = tmp_path / "out" / "clips"
    folder.mkdir(parents=True)
    dead = dead_pid()
    stale = make_partial(str(folder), f".clips_00001.webp.{dead}.0123456789ab.partial", outputs.STALE_AFTER + 1)
    stale_root = make_partial(str(tmp_path / "out"), f".x_00001.gif.{dead}.0123456789ab.partial",
                              outputs.STALE_AFTER + 1)
    fresh = make_partial(str(folder), f".clips_00002.webp.{dead}.0123456789ab.partial")
    result = save(ImageFrames(FRAMES), str(tmp_path / "out"), "clips/run", "image/webp", 8.0)
    assert not os.path.exists(stale) and not os.path.exists(stale_root)
    assert os.path.exists(fresh)
    assert sorted(os.listdir(folder)) == sorted([os.path.basename(fresh), "run_00001.webp"])
    assert result.path == str(folder / "run_00001.webp")


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    import numpy as np
    from video import ImageFrames, save
    frames = np.random.default_rng(0).random((200, 32, 32, 3), dtype=np.float32)
    def slow(done, total):
        if done == 60:  # past the encoders' look-ahead: data is on disk
            print("WRITING", flush=True)
        time.sleep(0.02)
    save(ImageFrames(frames), {folder!r}, "run", {fmt!r}, 8.0, metadata={{"prompt": {{}}}}, progress=slow)
""")


@pytest.mark.parametrize("format_name", ["image/webp", "image/png-sequence"] + (["video/h264-mp4"] if HAVE_AV else []))
def test_a_writer_killed_while_encoding_leaves_a_partial_that_the_next_save_removes(tmp_path, format_name):
    folder = tmp_path / "out"
    folder.mkdir()
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER.format(root=ROOT, folder=str(folder),
                                                                         fmt=format_name)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "WRITING"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    (left,) = os.listdir(folder)
    m = outputs.PARTIAL.match(left)
    assert m and int(m.group("pid")) == child.pid  # the name says whose it was
    # A fresh one is kept (its writer might be on another machine), an old one goes.
    save(ImageFrames(FRAMES), str(folder), "run", "image/gif", 8.0)
    assert left in os.listdir(folder)
    t = time.time() - outputs.STALE_AFTER - 1
    os.utime(folder / left, (t, t))
    result = save(ImageFrames(FRAMES), str(folder), "run", "image/gif", 8.0)
    assert sorted(os.listdir(folder)) == ["run_00001.gif", "run_00002.gif"]
    assert decode_any(result.path).shape[0] == 3


# ---------------------------------------------------------------------------------------------
# filename_prefix: spoofing characters, long names

@pytest.mark.parametrize("char", ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068",
                                  "\u2069", "\u200e", "\u200f", "\u200b", "\u2060", "\ufeff", "\u00ad", "\u0085",
                                  "\u2028", "\u2029", "\x7f", "\ud800"])
def test_bidirectional_and_other_invisible_characters_are_refused(tmp_path, char):
    prefix = f"clips/harmless{char}4pm.exe"
    with pytest.raises(OutputPathError) as info:
        save(ImageFrames(FRAMES), str(tmp_path / "out"), prefix, "image/webp", 8.0)
    message = str(info.value)
    assert message.startswith("filename_prefix ") and "contains control characters (U+" in message
    assert f"U+{ord(char):04X}" in message
    assert not (tmp_path / "out").exists()


def test_ordinary_unicode_is_fine(tmp_path):
    result = save(ImageFrames(FRAMES), str(tmp_path), "clips/été_日本語_عربي", "image/gif", 8.0)
    assert os.path.basename(result.path) == "été_日本語_عربي_00001.gif"


def test_a_300_character_folder_name_is_refused_naming_the_input(tmp_path):
    with pytest.raises(OutputPathError) as info:
        save(ImageFrames(FRAMES), str(tmp_path / "out"), "a" * 300 + "/run", "image/webp", 8.0)
    assert str(info.value).startswith("filename_prefix: the folder name 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' "
                                      "is 300 bytes long; at most 255 bytes are allowed")
    with pytest.raises(OutputPathError, match=r"^filename_prefix: the file name 'ééé.*' is 400 bytes long; at most "
                                              r"200 bytes"):
        save(ImageFrames(FRAMES), str(tmp_path / "out"), "é" * 200, "image/webp", 8.0)
    with pytest.raises(OutputPathError, match=r"^filename_prefix: the path of the output \(\d+ bytes\) is too long"):
        resolve_prefix(str(tmp_path / "out"), "/".join(["b" * 250] * 17) + "/run")
    assert not (tmp_path / "out").exists()
    # the longest allowed names work
    result = save(ImageFrames(FRAMES), str(tmp_path / "out"), "f" * 255 + "/" + "s" * 200, "image/gif", 8.0,
                  metadata={})
    assert len(os.path.basename(result.path)) == 210


# ---------------------------------------------------------------------------------------------
# Folders that cannot be made

def test_a_file_in_the_way_of_the_folder_is_explained(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "taken").write_text("a file")
    with pytest.raises(OutputPathError) as info:
        save(ImageFrames(FRAMES), str(tmp_path / "out"), "taken/run", "image/webp", 8.0)
    assert str(info.value).startswith(f"filename_prefix 'taken/run': cannot create the folder "
                                      f"{tmp_path / 'out' / 'taken'} (")
    assert "a file of that name is in the way of the folder" in str(info.value)


@pytest.mark.parametrize("error,advice", [
    (PermissionError(13, "Permission denied"), "the server may not write there"),
    (OSError(36, "File name too long"), "a folder or file name is too long"),
    (OSError(30, "Read-only file system"), "the file system is read-only"),
    (OSError(28, "No space left on device"), "the disk is full"),
])
def test_folders_that_cannot_be_made_give_a_clear_error(tmp_path, monkeypatch, error, advice):
    def refuse(*a, **k):
        raise error
    monkeypatch.setattr(os, "makedirs", refuse)
    with pytest.raises(OutputPathError) as info:
        save(ImageFrames(FRAMES), str(tmp_path / "out"), "sub/run", "image/webp", 8.0)
    message = str(info.value)
    assert message.startswith("filename_prefix 'sub/run': cannot create the folder ")
    assert f"({error.strerror} (" in message and advice in message
