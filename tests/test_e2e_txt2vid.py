"""The txt2vid workflow on a real ComfyUI server over HTTP, with the tiny models."""

import io
import json
import os

import pytest
import torch
from PIL import Image, ImageSequence
from safetensors.torch import save_file

from tools.comfy_server import ExecutionFailed, PromptRejected
from tools.demo import tiny_prompt
from tools.workflow import example_path, ui_to_api


def load(name):
    with open(example_path(name)) as f:
        return json.load(f)


def test_pack_loaded_with_tooltips(server):
    info = server.object_info
    ours = [name for name, node in info.items() if node.get("category") == "AnimateDiff"]
    assert {"LoadMotionModule", "ApplyMotionModule", "VideoCombine"} <= set(ours)
    for node in ours:
        inputs = {**info[node]["input"].get("required", {}), **info[node]["input"].get("optional", {})}
        for name, spec in inputs.items():
            assert len(spec) > 1 and spec[1].get("tooltip"), f"{node}.{name} has no tooltip"
    assert "tiny_mm_v2.safetensors" in info["LoadMotionModule"]["input"]["required"]["model_name"][0]


def test_ui_workflow_converts_to_api_twin(server):
    assert ui_to_api(load("txt2vid.json"), server.object_info) == load("txt2vid_api.json")


@pytest.fixture(scope="module")
def txt2vid_run(server):
    prompt = tiny_prompt(load("txt2vid_api.json"))
    prompt["4"]["inputs"].update(width=64, height=64)
    prompt["7"]["inputs"]["steps"] = 3
    steps = []
    history = server.run(prompt, load("txt2vid.json"),
                         on_progress=lambda v, m, node: steps.append((v, m)) if node == "7" else None)
    return prompt, history, steps


def test_txt2vid_animation(server, txt2vid_run):
    prompt, history, steps = txt2vid_run
    assert history["status"]["status_str"] == "success"
    assert steps and steps[-1] == (3, 3)
    ui = history["outputs"]["9"]
    assert ui["animated"] == [True]
    (item,) = ui["images"]
    assert item["type"] == "output" and item["subfolder"] == "AnimateDiff"
    assert item["filename"].startswith("txt2vid_") and item["filename"].endswith(".webp")
    image = Image.open(io.BytesIO(server.fetch_output(item)))
    frames = [f.convert("RGB") for f in ImageSequence.Iterator(image)]
    assert len(frames) == 16 and image.size == (64, 64)
    assert image.info["loop"] == 0 and image.info["duration"] == 125
    # The frames are distinct pictures, not one image repeated.
    import numpy as np
    arrays = [np.asarray(f, dtype=np.float32) for f in frames]
    assert np.abs(arrays[1] - arrays[0]).mean() > 0.1


def test_workflow_and_prompt_inside_and_beside(server, txt2vid_run):
    prompt, history, _ = txt2vid_run
    item = history["outputs"]["9"]["images"][0]
    image = Image.open(io.BytesIO(server.fetch_output(item)))
    exif = image.getexif()
    assert json.loads(exif[0x0110].split(":", 1)[1]) == prompt
    assert json.loads(exif[0x010F].split(":", 1)[1]) == load("txt2vid.json")
    sidecar = os.path.join(server.output_dir, item["subfolder"], item["filename"].rsplit(".", 1)[0] + ".json")
    assert json.load(open(sidecar)) == {"prompt": prompt, "workflow": load("txt2vid.json")}


def test_bad_prefix_is_refused_and_nothing_written(server):
    prompt = tiny_prompt(load("txt2vid_api.json"))
    prompt["4"]["inputs"].update(width=64, height=64, batch_size=2)
    prompt["7"]["inputs"]["steps"] = 1
    prompt["9"]["inputs"]["filename_prefix"] = "../../escape"
    before = set(os.listdir(os.path.dirname(server.output_dir)))
    # refused when queued (VideoCombine checks its prefix then), before anything is sampled
    with pytest.raises(PromptRejected, match="leads outside the output folder"):
        server.run(prompt)
    assert set(os.listdir(os.path.dirname(server.output_dir))) == before


def test_wrong_file_as_motion_module_is_explained(server):
    path = os.path.join(server.models_dir, "animatediff_models", "my_checkpoint.safetensors")
    save_file({"model.diffusion_model.out.2.weight": torch.zeros(4, 320, 3, 3)}, path)
    prompt = {"1": {"class_type": "LoadMotionModule", "inputs": {"model_name": "my_checkpoint.safetensors"}},
              "2": {"class_type": "ApplyMotionModule", "inputs": {"model": ["3", 0], "motion_model": ["1", 0],
                                                                  "motion_scale": 1.0, "beta_schedule": "autoselect"}},
              "3": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny_sd15.safetensors"}},
              "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 2}},
              "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["3", 1]}},
              "6": {"class_type": "KSampler", "inputs": {"model": ["2", 0], "seed": 1, "steps": 1, "cfg": 1.0,
                                                         "sampler_name": "euler", "scheduler": "normal",
                                                         "positive": ["5", 0], "negative": ["5", 0],
                                                         "latent_image": ["4", 0], "denoise": 1.0}},
              "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["3", 2]}},
              "8": {"class_type": "VideoCombine", "inputs": {"images": ["7", 0], "frame_rate": 8.0, "loop_count": 0,
                                                             "filename_prefix": "bad", "format": "image/gif",
                                                             "pingpong": False, "save_output": True}}}
    with pytest.raises(ExecutionFailed, match="my_checkpoint.safetensors is not a motion module: it is a full "
                                              "Stable Diffusion checkpoint"):
        server.run(prompt)
    assert not [f for f in os.listdir(server.output_dir) if f.startswith("bad")]
