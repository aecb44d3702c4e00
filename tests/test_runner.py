"""tools/run_workflow.py: the headless runner, as a user runs it (a subprocess) against the session's
server, once with a host of its own, and its workflow editing on a hand-made /object_info."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import sys

import pytest
from PIL import Image, ImageSequence

from tools import workflow as wf
from tools.run_workflow import file_input_candidates, media_kind

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "tools", "run_workflow.py")
TXT2VID = os.path.join(ROOT, "workflows", "txt2vid.json")
TINY = ["CheckpointLoaderSimple.ckpt_name=tiny_sd15.safetensors", "LoadMotionModule.model_name=tiny_mm_v2.safetensors"]


def run(*args, timeout=900):
    return subprocess.run([sys.executable, RUNNER, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


# ---------------------------------------------------------------------------------------------
# Editing, on a hand-made /object_info

INFO = {
    "KSampler": {"input": {"required": {
        "model": ["MODEL"], "seed": ["INT", {"min": 0}], "steps": ["INT", {"min": 1, "max": 100}],
        "cfg": ["FLOAT", {}], "sampler_name": [["euler", "ddim"]], "scheduler": [["normal"]],
        "positive": ["CONDITIONING"], "negative": ["CONDITIONING"], "latent_image": ["LATENT"],
        "denoise": ["FLOAT", {"min": 0.0, "max": 1.0}]}}, "output": ["LATENT"]},
    "CLIPTextEncode": {"input": {"required": {"text": ["STRING", {"multiline": True}], "clip": ["CLIP"]}},
                       "output": ["CONDITIONING"]},
    "LoadVideoFrames": {"input": {"required": {"video": [["a.mp4"]], "multiple_of_8": ["BOOLEAN", {}]}},
                        "output": ["IMAGE", "INT", "FLOAT"]},
    "LoadImage": {"input": {"required": {"image": [["x.png"], {"image_upload": True}]}}, "output": ["IMAGE", "MASK"]},
}
UI = {"nodes": [
    {"id": 3, "type": "KSampler", "inputs": [{"name": "positive", "type": "CONDITIONING", "link": 1}],
     "outputs": [], "widgets_values": [7, "randomize", 20, 7.5, "euler", "normal", 1.0]},
    {"id": 5, "type": "CLIPTextEncode", "title": "Positive prompt", "inputs": [], "outputs": [
        {"name": "CONDITIONING", "type": "CONDITIONING", "links": [1]}], "widgets_values": ["a cat"]},
    {"id": 6, "type": "CLIPTextEncode", "title": "Negative prompt", "inputs": [], "outputs": [],
     "widgets_values": ["blurry"]},
    {"id": 8, "type": "LoadVideoFrames", "inputs": [], "outputs": [], "widgets_values": ["a.mp4", True]},
], "links": [[1, 5, 0, 3, 0, "CONDITIONING"]]}


def edited(*assignments):
    ui = json.loads(json.dumps(UI))
    prompt = wf.ui_to_api(ui, INFO)
    titles = wf.titles(ui)
    for text in assignments:
        node, name, value = wf.parse_assignment(text)
        wf.set_input(prompt, INFO, node, name, value, titles, ui)
    return prompt, ui


def test_nodes_by_id_title_and_type():
    prompt, ui = edited("3.steps=4", "Positive prompt.text=a red fox", "KSampler.denoise=0.5",
                        "negative prompt.text=ugly", "LoadVideoFrames.multiple_of_8=false")
    assert prompt["3"]["inputs"]["steps"] == 4 and prompt["3"]["inputs"]["denoise"] == 0.5
    assert prompt["5"]["inputs"]["text"] == "a red fox" and prompt["6"]["inputs"]["text"] == "ugly"
    assert prompt["8"]["inputs"]["multiple_of_8"] is False
    # the UI workflow (embedded in the outputs) changes too, past the seed's control slot
    assert ui["nodes"][0]["widgets_values"] == [7, "randomize", 4, 7.5, "euler", "normal", 0.5]
    assert ui["nodes"][1]["widgets_values"] == ["a red fox"]


def test_values_are_read_as_the_input_type():
    prompt, _ = edited("3.seed=12", "3.cfg=3", "3.sampler_name=ddim")
    assert prompt["3"]["inputs"]["seed"] == 12 and isinstance(prompt["3"]["inputs"]["cfg"], float)
    with pytest.raises(wf.WorkflowError, match="'many' is not a whole number"):
        edited("3.steps=many")
    with pytest.raises(wf.WorkflowError, match="'maybe' is not true or false"):
        edited("8.multiple_of_8=maybe")


def test_wrong_references_are_explained():
    with pytest.raises(wf.WorkflowError, match=r"'CLIPTextEncode' is ambiguous: nodes 5, 6 have that type"):
        edited("CLIPTextEncode.text=x")
    with pytest.raises(wf.WorkflowError, match=r"no node 'Sampler' in the workflow; its nodes are: 3 \(KSampler\), "
                                               r"5 \(CLIPTextEncode \"Positive prompt\"\)"):
        edited("Sampler.steps=3")
    with pytest.raises(wf.WorkflowError, match=r"node 3 \(KSampler\) has no input 'step'; its inputs are: model, seed"):
        edited("3.step=3")
    with pytest.raises(wf.WorkflowError, match="is connected to another node"):
        edited("3.positive=x")
    with pytest.raises(wf.WorkflowError, match="not of the form node.input=value"):
        wf.parse_assignment("steps=3")


def test_input_files_go_to_the_inputs_that_take_them():
    prompt = wf.ui_to_api(UI, INFO)
    prompt["9"] = {"class_type": "LoadImage", "inputs": {"image": "x.png"}}
    assert media_kind("clip.MP4") == "video" and media_kind("a.png") == "image" and media_kind("a.xyz") is None
    assert file_input_candidates(prompt, INFO, "video") == [("8", "video")]
    assert file_input_candidates(prompt, INFO, "image") == [("9", "image")]


def test_checks_against_object_info():
    # the hand-made workflow leaves sockets open: the server would refuse it for that
    assert wf.check(UI, INFO) == [
        "node 3 (KSampler): required input 'model' is missing",
        "node 3 (KSampler): required input 'negative' is missing",
        "node 3 (KSampler): required input 'latent_image' is missing",
        "node 5 (CLIPTextEncode): required input 'clip' is missing",
        "node 6 (CLIPTextEncode): required input 'clip' is missing"]
    bad = json.loads(json.dumps(UI))
    bad["nodes"][0]["widgets_values"][2] = 0
    bad["nodes"][0]["widgets_values"][4] = "heun"
    bad["nodes"].append({"id": 9, "type": "Mystery", "inputs": [], "outputs": []})
    problems = wf.check(bad, INFO)
    assert "node 3 (KSampler).steps: 0 is below the minimum 1" in problems
    assert any(p.startswith("node 3 (KSampler).sampler_name: 'heun' is not one of the choices") for p in problems)
    assert "node 9 (Mystery): this ComfyUI has no node type 'Mystery'" in problems


# ---------------------------------------------------------------------------------------------
# The command against the session's server

def frames_of(path):
    image = Image.open(path)
    return image, [f.convert("RGB") for f in ImageSequence.Iterator(image)]


def test_ui_workflow_with_overrides(server, tmp_path):
    result = run(TXT2VID, *TINY, "4.width=64", "4.height=64", "Frames (batch_size = frame count).batch_size=6",
                 "KSampler.steps=2", "Positive prompt.text=a lighthouse at dusk", "--server", server.url,
                 "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (path,) = result.stdout.split()
    assert path == str(tmp_path / "AnimateDiff" / os.path.basename(path)) and path.endswith(".webp")
    image, frames = frames_of(path)
    assert len(frames) == 6 and image.size == (64, 64)
    # progress: the nodes as they run, and the sampler's bar to the last step
    assert "[run] 7 KSampler" in result.stderr and "2/2" in result.stderr and "#" * 30 in result.stderr
    # the embedded workflow is the file with the overrides in its widgets
    exif = image.getexif()
    workflow = json.loads(exif[0x010F].split(":", 1)[1])
    nodes = {n["id"]: n for n in workflow["nodes"]}
    assert nodes[2]["widgets_values"] == ["a lighthouse at dusk"]
    assert nodes[4]["widgets_values"] == [64, 64, 6]
    assert nodes[7]["widgets_values"][:3] == [42, "fixed", 2]
    prompt = json.loads(exif[0x0110].split(":", 1)[1])
    assert prompt["7"]["inputs"]["steps"] == 2 and prompt["2"]["inputs"]["text"] == "a lighthouse at dusk"


def test_api_workflow_with_an_uploaded_video(server, tmp_path):
    from tests.test_workflows import make_clip
    clip = make_clip(tmp_path / "my clip.mp4", frames=12, rate=8, size=(80, 48))
    result = run(wf.example_path("vid2vid_api.json"), *TINY, "KSampler.steps=2",
                 "LoadVideoFrames.frame_load_cap=5", "LoadVideoFrames.custom_width=0", "--input", clip,
                 "--server", server.url, "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "uploaded" in result.stderr and "-> node 4.video" in result.stderr
    assert os.path.exists(os.path.join(server.input_dir, "my clip.mp4"))
    image, frames = frames_of(result.stdout.split("\n")[0])
    assert len(frames) == 5 and image.size == (80, 48)
    assert image.info["duration"] == 125  # the clip's 8 fps, through the frame_rate link


def test_rejected_prompt_exits_with_the_servers_message(server, tmp_path):
    result = run(TXT2VID, *TINY, "VideoCombine.frame_rate=0", "VideoCombine.format=image/bmp", "--server", server.url,
                 "--out", str(tmp_path))
    assert result.returncode == 3
    assert "the server rejected the workflow" in result.stderr
    # VideoCombine checks its FLOAT and optional inputs and format itself (NaN included: nodes/inputs.py)
    assert "node 9 (VideoCombine): Custom validation failed for node: frame_rate - VideoCombine: frame_rate is 0.0; " \
           "expected a finite number from 0.1 to 240" in result.stderr
    assert "VideoCombine: format is 'image/bmp'; expected one of image/webp, " in result.stderr
    assert result.stdout == "" and not os.listdir(tmp_path)


def test_missing_input_file_is_the_servers_message(server, tmp_path):
    result = run(os.path.join(ROOT, "workflows", "vid2vid.json"), *TINY, "--server", server.url,
                 "--out", str(tmp_path))
    assert result.returncode == 3
    assert "node 4 (LoadVideoFrames)" in result.stderr
    assert "video 'input_video.mp4' is not in ComfyUI's input folder" in result.stderr


def test_usage_errors(server, tmp_path):
    result = run(TXT2VID, "Sampler.steps=2", "--server", server.url)
    assert result.returncode == 2 and "no node 'Sampler' in the workflow" in result.stderr
    result = run(TXT2VID, "--input", str(tmp_path / "absent.mp4"), "--server", server.url)
    assert result.returncode == 2 and "no such file" in result.stderr
    (tmp_path / "clip.mp4").write_bytes(b"x")
    result = run(TXT2VID, "--input", str(tmp_path / "clip.mp4"), "--server", server.url)
    assert result.returncode == 2 and "no node of this workflow takes video files" in result.stderr
    (tmp_path / "junk.json").write_text('{"hello": 1}')
    result = run(str(tmp_path / "junk.json"), "--server", server.url)
    assert result.returncode == 2 and "is not a ComfyUI workflow" in result.stderr
    result = run(TXT2VID, "--server", "http://127.0.0.1:9")
    assert result.returncode == 1 and "cannot reach ComfyUI at http://127.0.0.1:9" in result.stderr


def test_list_inputs(server):
    result = run(TXT2VID, "KSampler.steps=3", "--list-inputs", "--server", server.url)
    assert result.returncode == 0
    assert '7 KSampler\n    seed = 42\n    steps = 3\n' in result.stdout
    assert '2 CLIPTextEncode "Positive prompt"' in result.stdout


def test_starts_its_own_host_when_no_server_is_given(tiny_models, tmp_path):
    from tests.conftest import host_dir
    if host_dir() is None:
        pytest.skip("no ComfyUI host (run scripts/setup.sh or set COMFYUI_DIR)")
    result = run(wf.example_path("txt2vid_api.json"), *TINY, "4.width=64", "4.height=64",
                 "4.batch_size=3", "7.steps=1", "9.format=image/gif", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "starting the local ComfyUI headless" in result.stderr
    image, frames = frames_of(result.stdout.strip())
    assert image.format == "GIF" and len(frames) == 3
    assert not [d for d in os.listdir(os.path.join(ROOT, ".cache")) if d.startswith("run-server-")], \
        "the runner's server folder was left behind"


# ---------------------------------------------------------------------------------------------
# Options in any order, and README's examples as written

def test_options_and_overrides_in_any_order():
    from tools.run_workflow import parse_args
    for argv in (["w.json", "KSampler.steps=3", "--server", "http://h", "--input", "c.mp4", "7.cfg=2", "--out", "o"],
                 ["--server", "http://h", "w.json", "--input", "c.mp4", "--out", "o", "KSampler.steps=3", "7.cfg=2"],
                 ["w.json", "--out", "o", "KSampler.steps=3", "--server", "http://h", "7.cfg=2", "--input", "c.mp4"]):
        args = parse_args(argv)
        assert (args.workflow, args.assignments, args.server, args.input, args.out) == (
            "w.json", ["KSampler.steps=3", "7.cfg=2"], "http://h", ["c.mp4"], "o"), argv


def test_downloads_never_replace_an_earlier_file(tmp_path):
    from tools.run_workflow import save_new
    first = save_new(str(tmp_path / "txt2vid_00001.webp"), b"one")
    second = save_new(str(tmp_path / "txt2vid_00001.webp"), b"two")
    assert (os.path.basename(first), os.path.basename(second)) == ("txt2vid_00001.webp", "txt2vid_00001_2.webp")
    assert open(first, "rb").read() == b"one" and open(second, "rb").read() == b"two"


def readme_runner_commands() -> list[str]:
    """The tools/run_workflow.py command lines of README's "Running workflows headless" section, as a
    user copies them (continuation lines joined)."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("## Running workflows headless", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith(".venv/bin/python tools/run_workflow.py"):
                commands.append(line.strip())
    return commands


def test_readme_examples_parse():
    from tools.run_workflow import parse_args
    commands = readme_runner_commands()
    assert len(commands) >= 2, commands
    for command in commands:
        argv = shlex.split(command)[2:]
        args = parse_args(argv)
        assert os.path.isfile(os.path.join(ROOT, args.workflow)), command
        for text in args.assignments:
            wf.parse_assignment(text)


@pytest.fixture
def checkout(tmp_path):
    """A working folder that looks like the repository root to a command copied from README (its
    .venv, tools, workflows and .cache are the repository's own), so that relative paths work and
    outputs land in the folder, not in the repository."""
    if not os.path.exists(os.path.join(ROOT, ".venv", "bin", "python")):
        pytest.skip("no .venv (run scripts/setup.sh)")
    folder = tmp_path / "checkout"
    folder.mkdir()
    for name in (".venv", "tools", "workflows", ".cache"):
        os.symlink(os.path.join(ROOT, name), folder / name)
    return folder


def run_as_written(command: str, cwd, timeout=900):
    return subprocess.run(shlex.split(command), cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_readme_example_against_a_running_server(server, checkout):
    """README's first example, word for word but for the server's address. It names the real models,
    which the test server does not have: the clip is uploaded, the overrides are set, and the server's
    validation refuses the prompt naming the missing models (exit 3; the 2024 host
    queues it and its checkpoint loader fails: exit 1). The same command with
    --list-inputs shows the overrides in place. (Run on the tiny models, the workflow's 512-wide,
    20-step setting takes minutes on a CPU: the other runner tests cover runs.)"""
    from tests.test_workflows import make_clip
    (command,) = [c for c in readme_runner_commands() if "--server" in c]
    make_clip(checkout / "my_clip.mp4", frames=6, rate=8, size=(64, 48))
    url = re.search(r"--server (\S+)", command)[1]
    result = run_as_written(command.replace(url, server.url), checkout)
    assert "uploaded my_clip.mp4" in result.stderr and "-> node 4.video" in result.stderr
    if result.returncode == 3:  # current ComfyUI validates model names when the prompt is queued
        assert "the server rejected the workflow" in result.stderr
        assert "v1-5-pruned-emaonly.safetensors" in result.stderr and "mm_sd_v15_v2.ckpt" in result.stderr
    else:  # the 2024 host queues it and fails at the checkpoint loader
        assert result.returncode == 1 and "CheckpointLoaderSimple (node 1) failed" in result.stderr, result.stderr
    listed = run_as_written(command.replace(url, server.url) + " --list-inputs", checkout)
    assert listed.returncode == 0, listed.stderr
    assert '    text = "an oil painting of a dancer"' in listed.stdout
    assert "    denoise = 0.5" in listed.stdout


def test_readme_example_with_its_own_host(tiny_models, checkout):
    """README's second example, word for word: it starts the local host, and its output goes to
    workflow_output/ of the folder it runs in."""
    from tests.conftest import host_dir
    if host_dir() is None:
        pytest.skip("no ComfyUI host (run scripts/setup.sh or set COMFYUI_DIR)")
    (command,) = [c for c in readme_runner_commands() if "--server" not in c]
    result = run_as_written(command, checkout)
    assert result.returncode == 0, result.stderr
    assert "starting the local ComfyUI headless" in result.stderr
    (path,) = result.stdout.split()
    assert path.startswith("workflow_output/")
    image, frames = frames_of(checkout / path)
    assert image.size == (128, 128) and len(frames) == 16
