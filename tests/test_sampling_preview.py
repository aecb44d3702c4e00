"""The animated preview while sampling: the pure conversion (latents to the host's preview colours, one
animated WebP), then a real server sending it over the websocket for every frame of the batch while its
KSampler runs, only when switched on."""

from __future__ import annotations

import base64
import io
import json
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from tests.test_video_browser import CHROMIUM, browser, open_page  # noqa: F401 (fixture)
from video.preview import animated_webp, latents_to_rgb

SD15_FACTORS = [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721],
                [-0.2120, -0.2616, -0.7177]]


def test_latents_to_rgb_is_the_hosts_latent_preview_per_frame():
    latents = torch.randn(5, 4, 6, 7, generator=torch.Generator().manual_seed(0))
    rgb = latents_to_rgb(latents, SD15_FACTORS)
    assert rgb.shape == (5, 6, 7, 3) and rgb.dtype == np.uint8
    for frame in range(5):  # ComfyUI's Latent2RGBPreviewer, on one frame
        image = latents[frame].permute(1, 2, 0) @ torch.tensor(SD15_FACTORS)
        expected = ((image + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
        assert np.array_equal(rgb[frame], expected)
    bias = [0.1, -0.2, 0.3]
    shifted = latents_to_rgb(latents, SD15_FACTORS, bias)
    image = latents[0].permute(1, 2, 0) @ torch.tensor(SD15_FACTORS) + torch.tensor(bias)
    assert np.array_equal(shifted[0], ((image + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8).numpy())


def test_animated_webp_holds_every_frame():
    frames = np.stack([np.full((8, 10, 3), 20 * i, np.uint8) for i in range(6)])
    image = Image.open(io.BytesIO(animated_webp(frames, frame_rate=8)))
    decoded = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(image)]
    assert len(decoded) == 6 and decoded[0].shape == (8, 10, 3)
    # lossy (quality 80): each frame within 2 levels of its own grey, in order
    assert np.allclose([f.mean() for f in decoded], [0, 20, 40, 60, 80, 100], atol=2)
    assert image.info.get("loop") == 0


def switch(server, enabled=None, body=None):
    data = json.dumps({"enabled": enabled} if body is None else body).encode()
    request = urllib.request.Request(server.url + "/animatediff/preview", data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def prompt(seed):
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny_sd15.safetensors"}},
        "2": {"class_type": "LoadMotionModule", "inputs": {"model_name": "tiny_mm_v2.safetensors"}},
        "3": {"class_type": "ApplyMotionModule", "inputs": {"model": ["1", 0], "motion_model": ["2", 0],
                                                            "motion_scale": 1.0, "beta_schedule": "autoselect"}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 48, "batch_size": 8}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "a boat", "clip": ["1", 1]}},
        "6": {"class_type": "KSampler", "inputs": {"model": ["3", 0], "seed": seed, "steps": 3, "cfg": 7.0,
                                                   "sampler_name": "euler", "scheduler": "normal",
                                                   "positive": ["5", 0], "negative": ["5", 0],
                                                   "latent_image": ["4", 0], "denoise": 1.0}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}},
    }


def previews_of(server, seed):
    events = []
    server.run(prompt(seed), on_event=lambda kind, data: events.append(data) if kind == "animatediff.preview" else None)
    return events


def test_preview_of_every_frame_while_sampling_only_when_on(server):
    try:
        assert switch(server, True) == {"enabled": True}
        events = previews_of(server, seed=11)
    finally:
        switch(server, False)
    assert events, "no animated preview arrived while the KSampler ran"
    for event in events:
        assert event["node"] == "6" and event["frames"] == 8
        image = Image.open(io.BytesIO(base64.b64decode(event["image"])))
        frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(image)]
        assert len(frames) == 8 and frames[0].shape == (6, 8, 3)  # the latent size: 48x64 pixels / 8
        assert len({f.tobytes() for f in frames}) > 1  # the frames differ: the whole batch, not one frame
    with urllib.request.urlopen(server.url + "/animatediff/preview") as response:
        assert json.loads(response.read()) == {"enabled": False}
    assert previews_of(server, seed=12) == []  # off: nothing sent


@pytest.mark.parametrize("body", [{"enabled": "yes"}, {}, ["enabled"]])
def test_switch_refuses_what_is_not_a_boolean(server, body):
    with pytest.raises(urllib.error.HTTPError) as refused:
        switch(server, body=body)
    assert refused.value.code == 400
    assert json.loads(refused.value.read()) == {"error": 'expected JSON {"enabled": true or false}'}


# ---------------------------------------------------------------------------------------------
# In the browser (both frontends): the setting switches the server on, the preview animates on the sampler

@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium to drive")
def test_browser_shows_the_animation_on_the_sampling_node(server, browser):  # noqa: F811
    import asyncio

    async def run(port):
        async with open_page(port, server.url) as page:
            await page.wait_for("typeof window.app !== 'undefined' && !!window.app.graph && "
                                "!!LiteGraph.registered_node_types['ApplyMotionModule']")
            # the setting (on by default) has told the server
            await page.wait_for("fetch('/animatediff/preview').then(r => r.json()).then(j => j.enabled)")
            await page.eval("(async () => { app.graph.clear(); await app.loadApiJson(%s); "
                            "await app.queuePrompt(0); })()" % json.dumps(prompt(21)))
            return await page.wait_for(
                "(() => { const n = app.graph.getNodeById(6); "
                "const w = n?.widgets?.find(w => w.name === 'animatediff_sampling_preview'); "
                "const i = w?.img; return i && i.complete && i.naturalWidth ? "
                "{width: i.naturalWidth, height: i.naturalHeight, frames: i.dataset.frames} : null; })()",
                timeout=240)

    try:
        shown = asyncio.run(run(browser))
    finally:
        switch(server, False)
    assert shown == {"width": 8, "height": 6, "frames": "8"}
