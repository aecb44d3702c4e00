"""Every example workflow (workflows/ and workflows/api/), checked against the running host and run end to end.

Generic over the folder: a workflow added later is covered without touching this file, as long as its
model files have tiny stand-ins in TINY_FILES (the run says which is missing).

* both formats are there: ``workflows/<name>.json`` (UI format) and ``workflows/api/<name>_api.json`` (API
  format), and the UI file converts to exactly its API twin with the server's /object_info;
* workflows/ itself holds UI-format files only: current ComfyUI offers each of its files in the template
  browser (checked on its /workflow_templates route), and an API twin there would be offered too;
* every node type, input name, link and widget value exists in the server's /object_info (model and
  input file names excepted: the server has the tiny models, not the real ones);
* the UI file is tidy (no two nodes overlap) and explains itself in a Note;
* each workflow runs on the tiny models at a tiny size, and its outputs decode to the frames expected,
  with the prompt and the workflow embedded where the format carries them. SDXL workflows (SDXL beta,
  HotShot-XL) get the tiny SDXL checkpoint and SDXL-layout motion modules; their prompt at test size is
  checked against the server, but they are not run, and the skip says why: the tiny SDXL checkpoint
  has no text encoders (SDXL's CLIP-G alone is ~700M parameters) for their CLIPTextEncode nodes.
  tests/test_sdxl.py samples SDXL in-process (SDXL-shaped conditioning) and checks HotShot-XL's patching.
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest

from tools import workflow as wf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKFLOWS = wf.EXAMPLES  # UI format: what the host offers as templates
TEMPLATE_FILES = sorted(glob.glob(os.path.join(WORKFLOWS, "*.json")))
UI_FILES = [p for p in TEMPLATE_FILES if not p.endswith("_api.json")]
API_FILES = sorted(glob.glob(os.path.join(wf.API_EXAMPLES, "*.json")))
FILES = TEMPLATE_FILES + API_FILES
NAMES = sorted({os.path.basename(p)[:-len(".json")].removesuffix("_api") for p in FILES})
TITLE_HEIGHT = 30  # LiteGraph draws the title bar above a node's pos


def tiny_motion_module(name: str) -> str:
    """The tiny stand-in for a public motion module file, by the family and format its name says."""
    lowered = name.lower()
    if "animatelcm" in lowered:
        return "@tiny_animatelcm"
    if "hsxl" in lowered or "hotshot" in lowered:
        return "@tiny_hotshotxl"
    if "sdxl" in lowered:
        return "@tiny_mm_sdxl"
    return "tiny_mm_v2.safetensors"


def is_sdxl_name(name: str) -> bool:
    """SDXL checkpoints are named so: sd_xl_base_1.0, ...SDXL..., juggernautXL_..."""
    return "xl" in name.lower()


# Tiny stand-ins for the files a workflow names: (class_type, input) first, then the input name alone;
# a function of the file name where the kind of file matters. "@name" is made by the fixture of that
# name when a workflow first needs it.
TINY_FILES = {
    ("LoadMotionModule", "model_name"): tiny_motion_module,
    ("LoadMotionLoRA", "lora_name"): "@tiny_motion_lora",
    ("LoraLoader", "lora_name"): "@tiny_unet_lora",
    "ckpt_name": lambda name: "@tiny_sdxl" if is_sdxl_name(name) else "tiny_sd15.safetensors",
    "control_net_name": "@tiny_controlnet",
    ("LoadSparseCtrl", "sparsectrl_name"):
        lambda name: "@tiny_sparsectrl_scribble" if "scribble" in name.lower() else "@tiny_sparsectrl_rgb",
    ("LoadImage", "image"): "@uploaded_image",
    "video": "@uploaded_clip",
}
# Key prefixes of text-encoder weights in a checkpoint (SD1.5 / SDXL / newer single-file layouts).
TEXT_ENCODER_PREFIXES = ("cond_stage_model.", "conditioner.embedders.", "text_encoders.")
HOTSHOT_PE_LENGTH = 24
TINY_SIZE = 64
TINY_STEPS = 2
TINY_VIDEO_FRAMES = 8
# Workflows with a Context Scheduler load more video frames than the tiny motion module takes at once (its
# limit), so that their windows are really run; the clip has enough frames at 8 fps.
TINY_MOTION_LIMIT = 32
TINY_WINDOWED_FRAMES = 40
TINY_CLIP_FRAMES, TINY_CLIP_RATE = 72, 12  # 6 s: 48 frames re-timed to 8 fps
CONTROLNET_MEAN_CHANGE, CONTROLNET_FRAME_CHANGE = 3.0, 1.5  # ControlNet on vs off, mean |change| (0-255; ~4-8 seen)
SPARSECTRL_MEAN_CHANGE = 1.0  # SparseCtrl on vs off, mean |change| (0-255)


def load(path):
    with open(path) as f:
        return json.load(f)


def rel(path):
    return os.path.relpath(path, ROOT)


# ---------------------------------------------------------------------------------------------
# Files and formats

def test_there_are_workflows():
    assert {"txt2vid", "vid2vid", "txt2vid_motion_lora", "txt2vid_lightning", "txt2vid_animatelcm",
            "txt2vid_sdxl", "txt2vid_hotshotxl"} <= set(NAMES)


def twins(name):
    """(UI-format path, API-format path) of an example."""
    return wf.example_path(f"{name}.json"), wf.example_path(f"{name}_api.json")


@pytest.mark.parametrize("name", NAMES)
def test_both_formats_present(name):
    ui_path, api_path = twins(name)
    assert os.path.exists(ui_path), f"{rel(api_path)} has no UI-format twin {rel(ui_path)}"
    assert os.path.exists(api_path), f"{rel(ui_path)} has no API-format twin {rel(api_path)}"
    assert wf.is_ui_format(load(ui_path)) and not wf.is_api_format(load(ui_path))
    assert wf.is_api_format(load(api_path))


@pytest.mark.parametrize("path", TEMPLATE_FILES, ids=rel)
def test_templates_folder_holds_ui_files_only(path):
    assert not path.endswith("_api.json") and wf.is_ui_format(load(path)), (
        f"{rel(path)}: current ComfyUI offers every file of workflows/ in its template browser; API-format "
        f"twins go to workflows/api/ (named <name>_api.json)")


def test_template_browser_offers_each_example_once(server):
    """Current ComfyUI's /workflow_templates lists, per custom node folder, the .json files of its
    example folders (not of their subfolders); the frontend's Templates -> Custom Nodes shows that list."""
    import urllib.error
    try:
        templates = server.get_json("/workflow_templates")
    except urllib.error.HTTPError as e:
        if e.code == 404:
            pytest.skip("this ComfyUI has no template browser (/workflow_templates)")
        raise
    ours = {folder: names for folder, names in templates.items() if "txt2vid" in names}
    assert len(ours) == 1, templates
    (folder, names), = ours.items()
    assert sorted(names) == sorted(os.path.basename(p)[:-len(".json")] for p in UI_FILES)
    assert not [n for n in names if n.endswith("_api")]
    # the frontend fetches the file from the folder's static route: the UI format
    assert wf.is_ui_format(server.get_json(f"/api/workflow_templates/{folder}/txt2vid.json"))


@pytest.mark.parametrize("path", FILES, ids=rel)
def test_valid_against_host(server, path):
    problems = wf.check(load(path), server.object_info)
    assert not problems, f"{rel(path)}:\n" + "\n".join(problems)


@pytest.mark.parametrize("name", NAMES)
def test_ui_converts_to_its_api_twin(server, name):
    ui_path, api_path = twins(name)
    if not (os.path.exists(ui_path) and os.path.exists(api_path)):
        pytest.fail(f"{name}: one of the two formats is missing")
    assert wf.ui_to_api(load(ui_path), server.object_info) == load(api_path)


@pytest.mark.parametrize("path", UI_FILES, ids=rel)
def test_ui_layout_is_tidy_and_explained(path):
    data = load(path)
    notes = [n for n in data["nodes"] if n["type"] in ("Note", "MarkdownNote")]
    assert notes, f"{rel(path)} has no Note explaining the knobs that matter"
    assert all(len(" ".join(map(str, n.get("widgets_values") or []))) > 80 for n in notes)
    boxes = []
    for n in data["nodes"]:
        (x, y), (w, h) = n["pos"], n["size"]
        assert x >= 0 and y >= TITLE_HEIGHT, f"node {n['id']} sits off the top-left of the canvas"
        boxes.append((n["id"], x, y - TITLE_HEIGHT, x + w, y + h))
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            overlap = a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]
            assert not overlap, f"{rel(path)}: nodes {a[0]} and {b[0]} overlap"
    ids = [n["id"] for n in data["nodes"]]
    assert len(ids) == len(set(ids)) and data["last_node_id"] >= max(ids)
    assert data["last_link_id"] >= max((l[0] for l in data["links"]), default=0)


# ---------------------------------------------------------------------------------------------
# Tiny runs

def make_clip(path, frames=24, rate=12, size=(96, 72)):
    """A short moving test clip (H.264)."""
    import av
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            a = np.stack([(x * 255 // width + 8 * i) % 256, y * 255 // height,
                          np.full_like(x, (40 + 6 * i) % 256)], -1).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return str(path)


@pytest.fixture(scope="module")
def uploaded_clip(server, tmp_path_factory):
    """A test clip in the server's input folder (made when a workflow first asks for one)."""
    pytest.importorskip("av")
    path = make_clip(tmp_path_factory.mktemp("clip") / "workflow_clip.mp4", frames=TINY_CLIP_FRAMES,
                     rate=TINY_CLIP_RATE)
    return server.upload(path, overwrite=True)


@pytest.fixture(scope="module")
def tiny_motion_lora(server):
    """A motion LoRA for the tiny v2 motion module, in the server's animatediff_motion_lora folder."""
    from safetensors.torch import save_file

    from tests.helpers import motion_lora_tensors
    from tools.make_tiny_models import TINY_MOTION_DOWN, TINY_MOTION_MID, TINY_MOTION_UP
    name = "tiny_motion_lora.safetensors"
    save_file(motion_lora_tensors(TINY_MOTION_DOWN, TINY_MOTION_MID, TINY_MOTION_UP),
              os.path.join(server.models_dir, "animatediff_motion_lora", name))
    return name


@pytest.fixture(scope="module")
def tiny_animatelcm(server, tiny_models):
    """An AnimateLCM-format module: the tiny v2 module without stored positional encodings (how
    AnimateLCM files are recognised)."""
    from safetensors.torch import load_file, save_file
    tensors = {k: v for k, v in load_file(tiny_models.motion_module).items() if "pos_encoder" not in k}
    name = "tiny_animatelcm.safetensors"
    save_file(tensors, os.path.join(server.models_dir, "animatediff_models", name))
    return name


@pytest.fixture(scope="module")
def tiny_unet_lora(server, tiny_models):
    """A spatial LoRA for the tiny SD1.5 UNet (every self-attention query), in the server's loras folder."""
    import re

    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
    g = torch.Generator().manual_seed(5)
    tensors = {}
    with safe_open(tiny_models.checkpoint, "pt") as f:
        for key in f.keys():
            match = re.match(r"^model\.diffusion_model\.(.+\.attn1\.to_q)\.weight$", key)
            if match:
                out_features, in_features = f.get_slice(key).get_shape()
                base = "lora_unet_" + match.group(1).replace(".", "_")
                tensors[base + ".lora_down.weight"] = 0.02 * torch.randn(4, in_features, generator=g)
                tensors[base + ".lora_up.weight"] = 0.02 * torch.randn(out_features, 4, generator=g)
                tensors[base + ".alpha"] = torch.tensor(4.0)
    assert tensors, "no self-attention in the tiny checkpoint"
    name = "tiny_unet_lora.safetensors"
    save_file(tensors, os.path.join(server.models_dir, "loras", name))
    return name


def server_model(server, folder: str, path: str) -> str:
    """``path`` linked into the server's models folder ``folder``; its name there."""
    name = os.path.basename(path)
    dest = os.path.join(server.models_dir, folder, name)
    if not os.path.lexists(dest):
        os.symlink(path, dest)
    return name


def generated_tiny_model(tiny_models, folder: str, name: str) -> str:
    path = os.path.join(tiny_models.dir, folder, name)
    if not os.path.exists(path):
        pytest.skip(f"{folder}/{name} is not among the tiny models (run scripts/setup.sh)")
    return path


@pytest.fixture(scope="module")
def tiny_controlnet(server, tiny_models):
    """The tiny SD1.5 ControlNet (lllyasviel format) in the server's controlnet folder."""
    path = generated_tiny_model(tiny_models, "controlnet", "tiny_controlnet_sd15.safetensors")
    return server_model(server, "controlnet", path)


@pytest.fixture(scope="module")
def tiny_sparsectrl_rgb(server, tiny_models):
    """The tiny RGB SparseCtrl (original AnimateDiff layout) in the server's controlnet folder."""
    return server_model(server, "controlnet", generated_tiny_model(tiny_models, "controlnet",
                                                                   "tiny_sparsectrl_rgb.safetensors"))


@pytest.fixture(scope="module")
def tiny_sparsectrl_scribble(server, tiny_models):
    """The tiny scribble SparseCtrl in the server's controlnet folder."""
    return server_model(server, "controlnet", generated_tiny_model(tiny_models, "controlnet",
                                                                   "tiny_sparsectrl_scribble.safetensors"))


@pytest.fixture(scope="module")
def uploaded_image(server, tmp_path_factory):
    """A test picture (96x72, not the video's aspect ratio: Apply SparseCtrl crops it) in the server's input
    folder, for LoadImage."""
    from PIL import Image
    y, x = np.mgrid[0:72, 0:96]
    pixels = np.stack([x * 255 // 96, y * 255 // 72, (x + y) % 256], -1).astype(np.uint8)
    path = tmp_path_factory.mktemp("image") / "workflow_image.png"
    Image.fromarray(pixels).save(path)
    return server.upload(str(path), overwrite=True)


@pytest.fixture(scope="module")
def tiny_sdxl(server, tiny_models):
    """The tiny SDXL checkpoint (UNet + VAE, no text encoders) in the server's checkpoints folder."""
    path = generated_tiny_model(tiny_models, "checkpoints", "tiny_sdxl.safetensors")
    return server_model(server, "checkpoints", path)


@pytest.fixture(scope="module")
def tiny_mm_sdxl(server, tiny_models):
    """The tiny AnimateDiff-SDXL-layout motion module in the server's animatediff_models folder."""
    path = generated_tiny_model(tiny_models, "animatediff_models", "tiny_mm_sdxl.safetensors")
    return server_model(server, "animatediff_models", path)


@pytest.fixture(scope="module")
def tiny_hotshotxl(server, tiny_mm_sdxl):
    """A HotShot-XL-format module: the tiny SDXL module's tensors under HotShot-XL's key names, with its
    24-frame positional encoding (how hsxl_temporal_layers files are recognised)."""
    from safetensors.torch import load_file, save_file

    from motion_modules.formats import LAYOUT_HOTSHOT
    from tests.helpers import in_layout
    tensors = load_file(os.path.join(server.models_dir, "animatediff_models", tiny_mm_sdxl))
    tensors = {k: v[:, :HOTSHOT_PE_LENGTH].contiguous() if k.endswith(".pe") else v for k, v in tensors.items()}
    name = "tiny_hotshotxl.safetensors"
    save_file(in_layout(tensors, LAYOUT_HOTSHOT), os.path.join(server.models_dir, "animatediff_models", name))
    return name


def has_text_encoder(path: str) -> bool:
    from safetensors import safe_open
    with safe_open(path, "pt") as f:
        return any(k.startswith(TEXT_ENCODER_PREFIXES) for k in f.keys())


def clip_without_text_encoder(prompt: dict, server) -> list[tuple[str, str, list[str]]]:
    """(loader id, checkpoint, ids of the nodes using its CLIP) for each checkpoint loader whose CLIP output
    is used although the checkpoint has no text encoder (the host's loader then gives CLIP None)."""
    found = []
    for node_id, node in prompt.items():
        if node["class_type"] != "CheckpointLoaderSimple":
            continue
        users = sorted((k for k, n in prompt.items() for v in n["inputs"].values() if v == [node_id, 1]),
                       key=lambda k: (len(k), k))
        ckpt = node["inputs"]["ckpt_name"]
        if users and not has_text_encoder(os.path.join(server.models_dir, "checkpoints", ckpt)):
            found.append((node_id, ckpt, users))
    return found


def why_not_run(name: str, prompt: dict, server) -> str | None:
    """Why the workflow at test size cannot run on the tiny models, or None."""
    for loader, ckpt, users in clip_without_text_encoder(prompt, server):
        kinds = ", ".join(sorted({prompt[u]["class_type"] for u in users}))
        why = (f"{name} is not run end to end: its stand-in checkpoint {ckpt} (node {loader}) has no text encoders, "
               f"and nodes {', '.join(users)} ({kinds}) encode the prompt with its CLIP.")
        if is_sdxl_name(ckpt):
            why += (" A tiny SDXL checkpoint cannot have them: the host builds SDXL's text encoders at full size "
                    "(CLIP-G alone is ~700M parameters), and no other text encoder gives SDXL's conditioning "
                    "(2048-wide context, 1280-wide pooled output). Checked instead: this workflow at test size (tiny "
                    "SDXL checkpoint, a tiny motion module in the workflow's format) against the server's "
                    "/object_info, and that module's family, format and frame limit; tests/test_sdxl.py samples "
                    "SDXL with a motion module in-process and checks HotShot-XL's patching.")
        return why
    return None


def check_motion_stand_ins(prompt: dict, server):
    """For a workflow that cannot run: its stand-in motion modules read as the server would read them are
    of the checkpoint's family and format, and take its frame count without context windows."""
    from motion_modules import load_motion_model
    families = {"SDXL" if is_sdxl_name(n["inputs"]["ckpt_name"]) else "SD1.5"
                for n in prompt.values() if n["class_type"] == "CheckpointLoaderSimple"}
    frames = [n["inputs"]["batch_size"] for n in prompt.values() if n["class_type"] == "EmptyLatentImage"]
    windows = any(n["class_type"] == "ContextScheduler" for n in prompt.values())
    for node in prompt.values():
        if node["class_type"] != "LoadMotionModule":
            continue
        file_name = node["inputs"]["model_name"]
        fmt = load_motion_model(os.path.join(server.models_dir, "animatediff_models", file_name)).format
        assert {fmt.family} == families, f"{file_name} is {fmt.name} ({fmt.family}), the checkpoint {families}"
        if "hotshot" in file_name:
            assert fmt.version == "hotshot-xl" and fmt.pe_length == HOTSHOT_PE_LENGTH, fmt.name
        assert windows or all(f <= fmt.pe_length for f in frames), \
            f"{frames} frames, more than {fmt.name} takes without context windows ({fmt.pe_length})"


def tiny_file(class_type, name, value, options, fixture):
    stand_in = TINY_FILES.get((class_type, name), TINY_FILES.get(name))
    if callable(stand_in):
        stand_in = stand_in(value)
    if stand_in is not None and stand_in.startswith("@"):
        return fixture(stand_in[1:])
    if stand_in is None:
        pytest.fail(f"{class_type}.{name} names the file '{value}', and TINY_FILES in tests/test_workflows.py has no "
                    f"tiny stand-in for it (this server has: {options[:8]})")
    return stand_in


def has_windows(prompt: dict) -> bool:
    return any(n["class_type"] == "ContextScheduler" for n in prompt.values())


def tiny_prompt(prompt: dict, object_info: dict, fixture, tag: str) -> dict:
    """The workflow at test size: tiny models, 64x64, 2 steps, 8 video frames (40 with context windows:
    more than the tiny motion module's limit), outputs under wftest/."""
    out = json.loads(json.dumps(prompt))
    video_frames = TINY_WINDOWED_FRAMES if has_windows(out) else TINY_VIDEO_FRAMES
    for node in out.values():
        info = object_info[node["class_type"]]
        for name, value in list(node["inputs"].items()):
            spec = wf.input_spec(info, name)
            if spec is None or isinstance(value, list) and len(value) == 2 and isinstance(value[1], int):
                continue
            kind, options = spec
            if isinstance(kind, list) and value not in kind and wf.looks_like_file(value):
                node["inputs"][name] = tiny_file(node["class_type"], name, value, kind, fixture)
            elif kind == "INT" and name in ("width", "height", "custom_width", "custom_height") and value:
                node["inputs"][name] = TINY_SIZE
            elif kind == "INT" and name == "steps":
                node["inputs"][name] = min(value, TINY_STEPS)
            elif kind == "INT" and name == "frame_load_cap":
                node["inputs"][name] = video_frames
            elif kind == "INT" and name == "context_length":
                node["inputs"][name] = min(value, TINY_MOTION_LIMIT)
            elif kind == "STRING" and name == "filename_prefix":
                node["inputs"][name] = f"wftest/{tag}/" + value.replace("/", "_")
        if node["class_type"] == "LoadVideoFrames":  # both sides given: the output is exactly tiny-sized
            node["inputs"].update(custom_width=TINY_SIZE, custom_height=TINY_SIZE)
    return out


def upstream(prompt: dict, node_id: str):
    """Node ids feeding ``node_id``, nearest first."""
    seen, queue = [], [node_id]
    while queue:
        current = queue.pop(0)
        for value in prompt[current]["inputs"].values():
            if isinstance(value, list) and len(value) == 2 and value[0] in prompt and value[0] not in seen:
                seen.append(value[0])
                queue.append(value[0])
    return seen


def expected_frames(prompt: dict, node_id: str) -> int | None:
    """Frames reaching an output node: the batch of its latent source or the cap of its video source."""
    for source in upstream(prompt, node_id):
        node = prompt[source]
        if node["class_type"] in ("EmptyLatentImage", "EmptySD3LatentImage") and "batch_size" in node["inputs"]:
            return node["inputs"]["batch_size"]
        if node["class_type"] == "LoadVideoFrames":
            return node["inputs"]["frame_load_cap"]
    return None


def decode_output(server, items, tmp_path):
    """(frames (N, H, W, C), path of the first file) of one output node's files."""
    from tests.test_video_support import decode_any
    paths = []
    for item in items:
        path = tmp_path / item["filename"]
        path.write_bytes(server.fetch_output(item))
        paths.append(str(path))
    frames = np.concatenate([decode_any(p) for p in paths])  # several files: an image sequence
    return frames, paths[0]


def assert_windows_are_run(prompt: dict, object_info: dict):
    """With context windows, every output gets more frames than the tiny motion module's limit, and more
    than a window holds: the run goes through several windows (without them the module refuses it)."""
    if not has_windows(prompt):
        return
    longest = max(n["inputs"]["context_length"] for n in prompt.values() if n["class_type"] == "ContextScheduler")
    for node_id, node in prompt.items():
        if object_info[node["class_type"]].get("output_node"):
            frames = expected_frames(prompt, node_id)
            assert frames is None or frames > TINY_MOTION_LIMIT >= longest, \
                f"node {node_id}: {frames} frames, context length {longest}: no windows would be run"


@pytest.mark.parametrize("name", NAMES)
def test_runs_end_to_end_on_tiny_models(server, name, request, tmp_path):
    ui_path, api_path = twins(name)
    ui = load(ui_path) if os.path.exists(ui_path) else None
    prompt = load(api_path) if os.path.exists(api_path) else wf.ui_to_api(ui, server.object_info)
    prompt = tiny_prompt(prompt, server.object_info, request.getfixturevalue, name)
    assert_windows_are_run(prompt, server.object_info)
    fresh = server.get_json("/object_info")  # lists the uploaded clip too
    assert not wf.check_api(prompt, fresh, allow_absent_files=False)
    reason = why_not_run(name, prompt, server)
    if reason:
        check_motion_stand_ins(prompt, server)
        pytest.skip(reason)

    history = server.run(prompt, ui, timeout=900)
    assert history["status"]["status_str"] == "success"
    outputs = history["outputs"]
    output_nodes = [k for k, n in prompt.items() if server.object_info[n["class_type"]].get("output_node")]
    assert output_nodes and set(output_nodes) <= set(outputs), \
        f"{name}: output nodes that reported nothing: {set(output_nodes) - set(outputs)}"

    from tests.test_video_support import embedded_metadata
    for node_id in output_nodes:
        ui_out = outputs[node_id]
        items = [i for key in ("images", "animatediff_preview", "gifs", "videos") for i in ui_out.get(key, [])
                 if isinstance(i, dict) and i.get("filename")]
        assert items, f"node {node_id} reported no file"
        frames, first = decode_output(server, items, tmp_path)
        inputs = prompt[node_id]["inputs"]
        want = expected_frames(prompt, node_id)
        if want is not None and not inputs.get("loop_count"):
            if inputs.get("pingpong"):
                want = 2 * want - 2
            assert frames.shape[0] == want, f"{name}: node {node_id} wrote {frames.shape[0]} frames, expected {want}"
        assert frames.shape[1:3] == (TINY_SIZE, TINY_SIZE)
        # an animation, not one picture repeated
        assert np.abs(frames[1].astype(np.float32) - frames[0].astype(np.float32)).mean() > 0.1
        metadata = embedded_metadata(first)
        if "prompt" in metadata:
            # the server adds bookkeeping keys (is_changed) beside class_type and inputs
            assert {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in metadata["prompt"].items()} \
                == prompt
        if "workflow" in metadata and ui is not None:
            assert metadata["workflow"] == ui


def decoded_at_strengths(server, base: dict, apply_class: str, tmp_path):
    """``base`` run with its ``apply_class`` node at strength 1 and at 0: (video at 1, video at 0, the output
    node's id), decoded as float32; the host must not log that a control could not be applied meanwhile."""
    (apply_id,) = [k for k, n in base.items() if n["class_type"] == apply_class]
    (output_id,) = [k for k, n in base.items() if n["class_type"] == "VideoCombine"]
    with open(server.log_path, "rb") as f:
        log_start = f.seek(0, os.SEEK_END)
    videos = {}
    for strength in (1.0, 0.0):
        prompt = json.loads(json.dumps(base))
        prompt[apply_id]["inputs"]["strength"] = strength
        prompt[output_id]["inputs"]["filename_prefix"] += f"_strength{strength:g}"
        history = server.run(prompt, timeout=900)
        assert history["status"]["status_str"] == "success"
        items = [i for key in ("images", "animatediff_preview", "gifs", "videos")
                 for i in history["outputs"][output_id].get(key, []) if isinstance(i, dict) and i.get("filename")]
        videos[strength], _ = decode_output(server, items, tmp_path)
    with open(server.log_path, "rb") as f:
        f.seek(log_start)
        log = f.read().decode(errors="replace")
    assert "control could not be applied" not in log, log[-3000:]
    return videos[1.0].astype(np.float32), videos[0.0].astype(np.float32), output_id


def test_vid2vid_controlnet_applies_in_every_window(server, request, tmp_path):
    """The tiny vid2vid_controlnet run twice, ControlNet strength 1 and 0 (the host's node then returns the
    prompt unchanged): the decoded videos differ clearly in every frame, so the per-frame Canny hints reach
    the UNet in every context window (40 frames, windows of 16 sharing 4), and the host never logs that a
    control could not be applied."""
    name = "vid2vid_controlnet"
    base = tiny_prompt(load(twins(name)[1]), server.object_info, request.getfixturevalue, f"{name}_strength")
    assert_windows_are_run(base, server.object_info)
    on, off, _ = decoded_at_strengths(server, base, "ControlNetApplyAdvanced", tmp_path)
    assert on.shape == off.shape == (TINY_WINDOWED_FRAMES, TINY_SIZE, TINY_SIZE, on.shape[-1])
    per_frame = np.abs(on - off).mean(axis=(1, 2, 3))
    assert per_frame.mean() > CONTROLNET_MEAN_CHANGE and per_frame.min() > CONTROLNET_FRAME_CHANGE, \
        f"mean |change| per frame (0-255): {np.round(per_frame, 2).tolist()}"


@pytest.mark.parametrize("name", ["img2vid_sparsectrl_rgb", "scribble_sparsectrl"])
def test_sparsectrl_keyframe_changes_the_video(server, name, request, tmp_path):
    """The tiny SparseCtrl workflows run at strength 1 and 0 (Apply SparseCtrl then adds nothing): the decoded
    videos differ, so the keyframe reaches the UNet through the host's sampler, and the host never logs
    that a control could not be applied (residuals that do not fit the UNet)."""
    base = tiny_prompt(load(twins(name)[1]), server.object_info, request.getfixturevalue, f"{name}_strength")
    on, off, output_id = decoded_at_strengths(server, base, "ApplySparseCtrl", tmp_path)
    assert on.shape == off.shape and on.shape[0] == expected_frames(base, output_id) == 16
    per_frame = np.abs(on - off).mean(axis=(1, 2, 3))
    assert per_frame.mean() > SPARSECTRL_MEAN_CHANGE, \
        f"mean |change| per frame (0-255): {np.round(per_frame, 2).tolist()}"
