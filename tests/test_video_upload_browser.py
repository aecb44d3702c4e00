"""The video loaders' upload button as a person uses it: headless Chromium opens the frontend served by the
test server (the 2024 one, or current ComfyUI's with COMFYUI_DIR), loads a vid2vid graph (Load Video
(frames) -> VAE Encode -> KSampler on the animated model -> Video Combine), picks a clip with the node's
file picker (web/video_upload.js), sees it previewed under the node, queues vid2vid from the page (the clip
through the animated tiny model) and gets a playable video back under Video Combine."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from tests.test_load_video import make_video
from tests.test_video_browser import CHROMIUM, PREVIEW, browser, open_page  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium to drive")

VID2VID = {  # vid2vid on the tiny models: the uploaded clip, 6 frames at 64x48, through the animated KSampler
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny_sd15.safetensors"}},
    "2": {"class_type": "LoadVideoFrames", "inputs": {"video": "", "force_rate": 0.0, "frame_load_cap": 6,
                                                      "skip_first_frames": 0, "select_every_nth": 1,
                                                      "custom_width": 64, "custom_height": 48,
                                                      "multiple_of_8": True}},
    "3": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 2]}},
    "4": {"class_type": "LoadMotionModule", "inputs": {"model_name": "tiny_mm_v2.safetensors"}},
    "5": {"class_type": "ApplyMotionModule", "inputs": {"model": ["1", 0], "motion_model": ["4", 0],
                                                        "motion_scale": 1.0, "beta_schedule": "autoselect"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a painting", "clip": ["1", 1]}},
    "7": {"class_type": "KSampler", "inputs": {"model": ["5", 0], "seed": 1, "steps": 2, "cfg": 5.0,
                                               "sampler_name": "euler", "scheduler": "normal", "positive": ["6", 0],
                                               "negative": ["6", 0], "latent_image": ["3", 0], "denoise": 0.6}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["1", 2]}},
    "9": {"class_type": "VideoCombine", "inputs": {"images": ["8", 0], "frame_rate": 6.0, "loop_count": 0,
                                                   "filename_prefix": "upload/vid2vid", "format": "video/h264-mp4",
                                                   "pingpong": False, "save_output": True}},
}

BUILD = """(async () => {
  app.graph.clear();
  await app.loadApiJson(%s);
  window.__load = app.graph.getNodeById(2); window.__vc = app.graph.getNodeById(9);
  return window.__load.widgets.map(w => w.name);
})()""" % json.dumps(VID2VID)

INPUT_PREVIEW = """(() => {
  const w = window.__load.widgets.find(w => w.name === "animatediff_video_input_preview");
  const v = w?.video;
  if (!v || v.readyState < 2 || !v.videoWidth) return null;
  return {value: window.__load.widgets.find(w => w.name === "video").value, width: v.videoWidth,
          height: v.videoHeight, src: v.src, error: v.error ? v.error.code : null};
})()"""


async def _upload_and_run(port, server, clip):
    async with open_page(port, server.url) as page:
        await page.wait_for("typeof window.app !== 'undefined' && !!window.app.graph && "
                            "!!LiteGraph.registered_node_types['LoadVideoFrames']")
        widgets = await page.eval(BUILD)
        document = await page.call("DOM.getDocument", depth=-1)
        found = await page.call("DOM.querySelector", nodeId=document["root"]["nodeId"],
                                selector="input[type=file][data-animatediff-upload]")
        assert found["nodeId"], "no file picker of the upload button in the page"
        await page.call("DOM.setFileInputFiles", files=[clip], nodeId=found["nodeId"])
        preview = await page.wait_for(INPUT_PREVIEW, timeout=60)
        await page.eval("app.queuePrompt(0)")
        await asyncio.sleep(0.2)
        result = await page.wait_for(PREVIEW, timeout=180)
        return widgets, preview, result


def test_upload_button_previews_the_clip_and_the_page_runs_it(server, browser, tmp_path):  # noqa: F811
    pytest.importorskip("av")
    clip = make_video(tmp_path / "from_my_disk.mp4", frames=24, rate=12, size=(96, 64))
    target = os.path.join(server.input_dir, "from_my_disk.mp4")
    if os.path.exists(target):
        os.remove(target)
    widgets, preview, result = asyncio.run(_upload_and_run(browser, server, str(clip)))
    assert "choose video to upload" in widgets
    # uploaded into the server's input folder, byte for byte, selected and previewed
    with open(target, "rb") as f, open(clip, "rb") as g:
        assert f.read() == g.read()
    assert preview["value"] == "from_my_disk.mp4" and preview["error"] is None
    assert (preview["width"], preview["height"]) == (96, 64) and "type=input" in preview["src"]
    # queued from the page: vid2vid of the loaded frames (resized to 64x48) came back as a playable video
    assert result["tag"] == "VIDEO" and result["error"] is None
    assert (result["width"], result["height"]) == (64, 48)
