"""workflows/txt2vid_long: 64 frames with context windows, on a real ComfyUI server."""

import io

from PIL import Image, ImageSequence

from tests.test_e2e_txt2vid import load
from tools.demo import tiny_prompt
from tools.workflow import ui_to_api


def test_ui_workflow_converts_to_api_twin(server):
    assert ui_to_api(load("txt2vid_long.json"), server.object_info) == load("txt2vid_long_api.json")


def test_64_frames_in_context_windows(server):
    prompt = tiny_prompt(load("txt2vid_long_api.json"))
    prompt["4"]["inputs"].update(width=64, height=64, batch_size=64)
    prompt["7"]["inputs"]["steps"] = 2
    progress = []
    history = server.run(prompt, on_progress=lambda value, total, node: progress.append((value, total, node)))
    assert history["status"]["status_str"] == "success"
    # Progress moves through the windows of each step, not only once per step.
    sampler = [(v, t) for v, t, node in progress if node == "7"]
    assert sampler[-1] == (2, 2) and any(v != int(v) for v, _ in sampler)
    item = history["outputs"]["9"]["images"][0]
    image = Image.open(io.BytesIO(server.fetch_output(item)))
    frames = list(ImageSequence.Iterator(image))
    assert len(frames) == 64 and image.size == (64, 64)
