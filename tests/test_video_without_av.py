"""Without PyAV the pack still imports and VideoCombine offers (and writes) the Pillow formats."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = textwrap.dedent("""
    import sys
    sys.modules["av"] = None          # as if `pip install av` had never run
    sys.path.insert(0, {root!r})
    import numpy as np
    import video
    from video import EncodeError, ImageFrames, encode
    print("HAVE_AV", video.HAVE_AV)
    print("FORMATS", ",".join(video.FORMATS))
    frames = ImageFrames(np.random.default_rng(0).random((3, 16, 16, 3), dtype=np.float32))
    for fmt, ext in [("image/webp", ".webp"), ("image/gif", ".gif"), ("image/apng", ".png"), ("image/png-sequence", "")]:
        r = encode(frames, {out!r} + "/clip_" + fmt.split("/")[1] + ext, fmt, 8.0)
        print("WROTE", fmt, r.frames)
    try:
        encode(frames, {out!r} + "/clip.mp4", "video/h264-mp4", 8.0)
    except EncodeError as e:
        print("ERROR", e)
""")


def test_pillow_formats_work_without_pyav(tmp_path):
    run = subprocess.run([sys.executable, "-c", CHILD.format(root=ROOT, out=str(tmp_path))], capture_output=True,
                         text=True, timeout=120)
    lines = run.stdout.splitlines()
    assert "HAVE_AV False" in lines, run.stdout + run.stderr
    assert "FORMATS image/webp,image/gif,image/apng,image/png-sequence" in lines
    assert [l for l in lines if l.startswith("WROTE")] == [
        "WROTE image/webp 3", "WROTE image/gif 3", "WROTE image/apng 3", "WROTE image/png-sequence 3"]
    assert ("ERROR format 'video/h264-mp4' is not available here: PyAV is not installed (pip install av)"
            in lines)
    assert not os.path.exists(tmp_path / "clip.mp4")


def test_node_module_imports_pyav_only_through_the_video_package():
    source = open(os.path.join(ROOT, "nodes", "video.py")).read()
    assert "import av" not in source
    for name in os.listdir(os.path.join(ROOT, "video")):
        if name.endswith(".py"):
            text = open(os.path.join(ROOT, "video", name)).read()
            assert "folder_paths" not in text and "import comfy" not in text, name  # pure: no ComfyUI
