"""Fault suite (issue 11), on a real server over HTTP: a good prompt, then faults a careless user or an
attacker sends through the raw API (option and path injection, non-finite and out-of-range values,
corrupt and poisoned model files), each refused with a message naming the input or file; then the server
still serves, the good prompt's output is unchanged, no partial file is left and nothing was written
outside the output and temp folders. (Concurrent writers and killed writers: tests/test_video_safety.py.)"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from tests.test_video_support import decode_any


def good_prompt(prefix: str, **video) -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny_sd15.safetensors"}},
        "2": {"class_type": "LoadMotionModule", "inputs": {"model_name": "tiny_mm_v2.safetensors"}},
        "3": {"class_type": "ApplyMotionModule", "inputs": {"model": ["1", 0], "motion_model": ["2", 0],
                                                            "motion_scale": 1.0, "beta_schedule": "autoselect"}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 2}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["1", 1]}},
        "6": {"class_type": "KSampler", "inputs": {"model": ["3", 0], "seed": 3, "steps": 1, "cfg": 1.0,
                                                   "sampler_name": "euler", "scheduler": "normal",
                                                   "positive": ["5", 0], "negative": ["5", 0],
                                                   "latent_image": ["4", 0], "denoise": 1.0}},
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}},
        "8": {"class_type": "VideoCombine", "inputs": {"images": ["7", 0], "frame_rate": 8.0, "loop_count": 0,
                                                       "filename_prefix": prefix, "format": "image/gif",
                                                       "pingpong": False, "save_output": True, **video}},
    }


def tree(folder, skip=()) -> dict:
    """{relative path: (size, mtime)} of every file under ``folder``, top-level names in ``skip`` left out."""
    out = {}
    for base, dirs, files in os.walk(folder):
        if base == folder:
            dirs[:] = [d for d in dirs if d not in skip]
        for name in files:
            path = os.path.join(base, name)
            if base == folder and name in skip:
                continue
            st = os.lstat(path)
            out[os.path.relpath(path, folder)] = (st.st_size, st.st_mtime_ns)
    return out


def output_frames(server, history: dict) -> np.ndarray:
    (item,) = history["outputs"]["8"]["animatediff_preview"]
    return decode_any(os.path.join(server.output_dir, item["subfolder"], item["filename"]))


@pytest.fixture
def model_files(server):
    """A truncated and a NaN-poisoned motion module beside the good one, removed afterwards."""
    from safetensors.torch import load_file, save_file
    folder = os.path.join(server.models_dir, "animatediff_models")
    tensors = load_file(os.path.join(folder, "tiny_mm_v2.safetensors"))
    key = sorted(k for k in tensors if k.endswith("to_q.weight"))[0]
    tensors[key].view(-1)[0] = math.inf
    poisoned = os.path.join(folder, "fault_inf_mm.safetensors")
    save_file(tensors, poisoned)
    truncated = os.path.join(folder, "fault_truncated_mm.safetensors")
    with open(os.path.join(folder, "tiny_mm_v2.safetensors"), "rb") as f:
        data = f.read()
    with open(truncated, "wb") as f:
        f.write(data[: len(data) // 2])
    yield {"poisoned": (os.path.basename(poisoned), key), "truncated": os.path.basename(truncated)}
    os.remove(poisoned)
    os.remove(truncated)


def test_faults_are_refused_and_leave_the_server_as_it_was(server, model_files, tmp_path):
    from tools.comfy_server import ExecutionFailed, PromptRejected
    from video import FORMATS

    before = output_frames(server, server.run(good_prompt("fault_before")))
    victim = tmp_path / "victim.log"
    victim.write_text("precious")
    workdir_before = tree(server.workdir, skip=("output", "temp", "server.log"))
    models_before = tree(server.models_dir)

    poisoned, key = model_files["poisoned"]
    faults = [  # (node id, input changes, what the message must say)
        ("8", {"frame_rate": math.nan}, "frame_rate is nan"),
        ("8", {"frame_rate": 1e309}, "frame_rate is inf"),
        ("8", {"loop_count": 10 ** 6}, "loop_count"),
        ("8", {"filename_prefix": "../../fault_escape"}, "leads outside the output folder"),
        ("8", {"filename_prefix": str(tmp_path / "abs")}, "must be relative to the output folder"),
        ("8", {"filename_prefix": "clip\u202egpj.exe"}, "U+202E"),
        ("8", {"filename_prefix": "d" * 300 + "/run"}, "folder name"),
        ("3", {"motion_scale": math.nan}, "motion_scale is nan"),
        ("3", {"motion_scale": -1.0}, "motion_scale"),
        ("2", {"model_name": poisoned}, f"{poisoned}: tensor '{key}' holds 1 infinite value"),
        ("2", {"model_name": model_files["truncated"]}, model_files["truncated"]),
        ("2", {"model_name": "../../../etc/passwd"}, "../../../etc/passwd"),
    ]
    if "video/h264-mp4" in FORMATS:
        faults += [("8", {"format": "video/h264-mp4", "codec_options": f"x264-params=pass=1:stats={victim}"},
                    "path separator"),
                   ("8", {"format": "video/h264-mp4", "codec_options": "x264-params=pass=1:stats=x.log"},
                    "x264-params entry 'pass' is not allowed")]
    if "video/h265-mp4" in FORMATS:
        faults += [("8", {"format": "video/h265-mp4", "codec_options": f"x265-params=csv={victim}:csv-log-level=2"},
                    "path separator")]
    for node_id, change, message in faults:
        prompt = good_prompt("fault")
        prompt[node_id]["inputs"].update(change)
        steps = []
        with pytest.raises((PromptRejected, ExecutionFailed)) as info:
            server.run(prompt, on_progress=lambda value, total, node: steps.append(value))
        assert message in str(info.value), (change, str(info.value))
        if node_id != "8" or isinstance(info.value, PromptRejected):
            assert steps == [], (change, "sampling started")

    # the server still serves, and the good prompt's output is unchanged
    after = output_frames(server, server.run(good_prompt("fault_after")))
    assert np.array_equal(before, after)
    # nothing written outside the output folder, no partial or refused file left in it
    assert victim.read_text() == "precious" and os.listdir(tmp_path) == ["victim.log"]
    assert tree(server.workdir, skip=("output", "temp", "server.log")) == workdir_before
    assert tree(server.models_dir) == models_before
    assert not os.path.exists(os.path.join(os.path.dirname(server.workdir), "fault_escape_00001.gif"))
    written = [p for p in tree(server.output_dir) if "fault" in p]
    assert sorted(written) == ["fault_after_00001.gif", "fault_after_00001.json", "fault_before_00001.gif",
                               "fault_before_00001.json"], written
    for folder in (server.output_dir, server.temp_dir):
        assert not [p for p in tree(folder) if p.endswith(".partial")]


def test_interrupt_while_sampling_leaves_nothing_and_the_server_serves(server):
    """Interrupted during the sampler's first steps (POST /interrupt, as the frontend's Cancel does): the
    prompt ends as interrupted, no output or partial file of it is left, and the next prompt's output is what
    it was before."""
    import json
    import urllib.request

    from tools.comfy_server import ExecutionFailed

    before = output_frames(server, server.run(good_prompt("interrupt_before")))
    long_run = good_prompt("interrupted")
    long_run["6"]["inputs"].update(steps=200)
    interrupted = []

    def interrupt(value, total, node):
        if not interrupted:
            interrupted.append(value)
            request = urllib.request.Request(server.url + "/interrupt", data=json.dumps({}).encode(), method="POST",
                                             headers={"Content-Type": "application/json"})
            urllib.request.urlopen(request).close()

    with pytest.raises(ExecutionFailed, match="interrupted"):
        server.run(long_run, on_progress=interrupt)
    assert interrupted and interrupted[0] < 200
    after = output_frames(server, server.run(good_prompt("interrupt_after")))
    assert np.array_equal(before, after)
    assert not [p for p in tree(server.output_dir) if "interrupted" in p]
    for folder in (server.output_dir, server.temp_dir):
        assert not [p for p in tree(folder) if p.endswith(".partial")]


def test_flood_script_runs_and_reports(server):
    """tools/fault_flood.py (the long flood, for operators) on a few prompts: it starts its own server on the
    same host, and every check it makes passes."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    if server.host_dir:
        env["COMFYUI_DIR"] = server.host_dir
    out = subprocess.run([sys.executable, os.path.join(root, "tools", "fault_flood.py"), "--prompts", "8"],
                         capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "8 prompts in " in out.stdout and "accepted" in out.stdout and "refused when queued" in out.stdout
    assert "still serving, output unchanged: True" in out.stdout
