"""The VideoCombine node inside a real host: in-process (LATENT + VAE decoded in bounded batches,
progress, the declared inputs) and on a real ComfyUI server over HTTP (files, ui, metadata, the web
extension, errors)."""

from __future__ import annotations

import json
import os
import urllib.request

import numpy as np
import pytest
import torch

from tests.test_video_support import decode_any, decode_av, embedded_metadata, make_pattern
from video import FORMATS, HAVE_AV, LatentFrames, frame_order

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIRED = ["frame_rate", "loop_count", "filename_prefix", "format", "pingpong", "save_output"]


# ---------------------------------------------------------------------------------------------
# Pure: latent frames

class CountingDecoder:
    def __init__(self):
        self.calls = []

    def __call__(self, samples):
        self.calls.append(samples.shape[0])
        n = samples.shape[0]
        # a fake VAE: 8x upscale of the first three latent channels, squashed to [0, 1]
        images = torch.sigmoid(samples[:, :3]).repeat_interleave(8, 2).repeat_interleave(8, 3)
        return images.movedim(1, -1)


def test_latent_frames_are_decoded_in_bounded_batches():
    latents = torch.randn(10, 4, 4, 4)
    decode = CountingDecoder()
    source = LatentFrames(latents, decode, batch_size=3)
    assert (source.count, source.height, source.width) == (10, 32, 32)
    frames = [source.frame(i) for i in frame_order(10, pingpong=True)]
    assert len(frames) == 18
    assert max(decode.calls) <= 3  # never more than one batch decoded at a time
    # forward: first batch (at construction) + 3 more; backward: 4 batches again (pingpong re-decodes)
    assert len(decode.calls) <= 9
    full = (torch.sigmoid(latents[:, :3]).repeat_interleave(8, 2).repeat_interleave(8, 3).movedim(1, -1) * 255).round()
    assert np.array_equal(frames[4], full[4].numpy().astype(np.uint8))
    assert np.array_equal(frames[12], full[6].numpy().astype(np.uint8))  # backward pass: 9 8 7 6


def test_latent_decoder_that_returns_the_wrong_shape_is_explained():
    with pytest.raises(ValueError, match=r"the VAE returned \(1, 8, 8, 3\) for 2 latent frames"):
        LatentFrames(torch.zeros(2, 4, 1, 1), lambda s: torch.zeros(1, 8, 8, 3), batch_size=2)


# ---------------------------------------------------------------------------------------------
# In-process host

@pytest.fixture
def node(host, tmp_path):
    fp = host.folder_paths
    old = fp.get_output_directory(), fp.get_temp_directory()
    fp.set_output_directory(str(tmp_path / "output"))
    fp.set_temp_directory(str(tmp_path / "temp"))
    try:
        yield host.pack.NODE_CLASS_MAPPINGS["VideoCombine"]()
    finally:
        fp.set_output_directory(old[0])
        fp.set_temp_directory(old[1])


def test_declared_inputs_keep_the_saved_workflow_order(host):
    cls = host.pack.NODE_CLASS_MAPPINGS["VideoCombine"]
    types = cls.INPUT_TYPES()
    assert list(types["required"]) == REQUIRED
    assert list(types["optional"])[:4] == ["images", "latent", "vae", "audio"]
    assert types["required"]["format"][0] == list(FORMATS)
    for name, (kind, options) in types["optional"].items():
        assert options.get("tooltip"), name
    workflow = json.load(open(os.path.join(ROOT, "workflows", "txt2vid.json")))
    (vc,) = [n for n in workflow["nodes"] if n["type"] == "VideoCombine"]
    assert dict(zip(REQUIRED, vc["widgets_values"])) == {
        "frame_rate": 8.0, "loop_count": 0, "filename_prefix": "AnimateDiff/txt2vid", "format": "image/webp",
        "pingpong": False, "save_output": True}
    assert host.pack.WEB_DIRECTORY == "./web" and os.path.isfile(os.path.join(ROOT, "web", "video_preview.js"))


def test_node_writes_and_reports_progress(node, host, tmp_path):
    seen = []
    host.comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, **kw: seen.append((value, total)))
    try:
        out = node.combine(8.0, 0, "clips/run", "image/apng", False, True,
                           images=torch.from_numpy(make_pattern(4, 16, 16)), prompt={"1": {}},
                           extra_pnginfo={"workflow": {"nodes": []}})
    finally:
        host.comfy.utils.set_progress_bar_global_hook(None)
    images, path = out["result"]
    assert images.shape == (4, 16, 16, 3)
    assert path == str(tmp_path / "output" / "clips" / "run_00001.png")
    assert out["ui"] == {"images": [{"filename": "run_00001.png", "subfolder": "clips", "type": "output"}],
                         "animated": (True,)}
    assert seen[-1] == (4, 4) and len(seen) == 4
    assert embedded_metadata(path) == {"prompt": {"1": {}}, "workflow": {"nodes": []}}


def test_node_decodes_a_latent_with_the_host_vae(node, sd15, tmp_path):
    latents = torch.randn(5, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = sd15.vae.decode(latents)
        out = node.combine(8.0, 0, "lat", "image/webp", False, False, latent={"samples": latents},
                           vae=sd15.vae, lossless=True)
    first, path = out["result"]
    assert path.startswith(str(tmp_path / "temp"))  # save_output off: the temp folder
    assert out["ui"]["images"][0]["type"] == "temp"
    assert first.shape == (1,) + tuple(expected.shape[1:])  # latent mode passes only the first frame on
    decoded = decode_any(path)
    assert decoded.shape == (5,) + tuple(expected.shape[1:])
    assert np.abs(decoded.astype(float) - (expected.float().numpy() * 255).round()).max() <= 1


def test_node_without_frames_says_what_to_connect(node):
    with pytest.raises(Exception, match=r"connect `images`, or `latent` and `vae`"):
        node.combine(8.0, 0, "x", "image/webp", False, True)
    with pytest.raises(Exception, match="got a latent but no vae"):
        node.combine(8.0, 0, "x", "image/webp", False, True, latent={"samples": torch.zeros(1, 4, 8, 8)})


@pytest.mark.skipif(not HAVE_AV, reason="PyAV is not installed")
def test_node_video_ui_goes_to_the_web_extension(node, tmp_path):
    out = node.combine(8.0, 0, "v", "video/h264-mp4", False, True, images=torch.from_numpy(make_pattern(4, 16, 16)),
                       audio={"waveform": torch.zeros(1, 2, 44100), "sample_rate": 44100}, crf=23,
                       preset="veryfast", pix_fmt="auto", quality=90, lossless=False, codec_options="")
    (item,) = out["ui"]["animatediff_preview"]
    assert item == {"filename": "v_00001.mp4", "subfolder": "", "type": "output", "format": "video/h264-mp4",
                    "media": "video", "mime": "video/mp4"}
    _, _, info = decode_av(out["result"][1])
    assert info["audio"] and info["audio"][0]["codec"] == "aac"


# ---------------------------------------------------------------------------------------------
# A real server

def _prompt(fmt, prefix, **extra):
    inputs = {"frame_rate": 8.0, "loop_count": 0, "filename_prefix": prefix, "format": fmt, "pingpong": False,
              "save_output": True, "latent": ["2", 0], "vae": ["1", 2], **extra}
    return {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny_sd15.safetensors"}},
            "2": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 6}},
            "3": {"class_type": "VideoCombine", "inputs": inputs}}


WORKFLOW = {"nodes": [{"id": 3, "type": "VideoCombine"}], "links": [], "version": 0.4}


@pytest.mark.skipif(not HAVE_AV, reason="PyAV is not installed")
@pytest.mark.parametrize("fmt", ["video/h264-mp4", "video/vp9-webm"])
def test_server_writes_a_video_with_the_workflow_inside(server, fmt, tmp_path):
    prompt = _prompt(fmt, "e2e/%date:yyyy%/clip", crf=23, preset="veryfast")
    history = server.run(prompt, WORKFLOW)
    assert history["status"]["status_str"] == "success"
    (item,) = history["outputs"]["3"]["animatediff_preview"]
    assert item["subfolder"].startswith("e2e/2") and item["media"] == "video"
    data = server.fetch_output(item)
    path = tmp_path / item["filename"]
    path.write_bytes(data)
    frames, times, info = decode_av(str(path))
    assert frames.shape[:3] == (6, 64, 64)
    assert np.allclose(np.diff(times), 0.125, atol=1e-3)
    found = embedded_metadata(str(path))
    assert found["workflow"] == WORKFLOW
    assert found["prompt"]["3"]["inputs"]["format"] == fmt
    sidecar = os.path.join(server.output_dir, item["subfolder"], item["filename"].rsplit(".", 1)[0] + ".json")
    assert json.load(open(sidecar))["workflow"] == WORKFLOW


def test_server_serves_the_preview_extension(server):
    listed = server.get_json("/extensions")
    (script,) = [s for s in listed if s.endswith("/video_preview.js")]
    body = server.get_bytes(script).decode()
    assert "animatediff_preview" in body and "registerExtension" in body


def test_server_refuses_a_negative_frame_rate(server):
    from tools.comfy_server import PromptRejected
    prompt = _prompt("image/gif", "neg")
    prompt["3"]["inputs"]["frame_rate"] = -8.0
    with pytest.raises(PromptRejected, match="frame_rate"):
        server.run(prompt)


@pytest.mark.skipif(not HAVE_AV, reason="PyAV is not installed")
def test_server_refuses_codec_options_off_the_allow_list_at_queue_time_and_writes_nothing(server, tmp_path):
    from tools.comfy_server import PromptRejected
    target = tmp_path / "victim.log"
    target.write_text("precious")
    for options, message in [("bogus=1", "'bogus' is not an encoder option this pack passes on"),
                             (f"x264-params=pass=1:stats={target}", "holds a path separator"),
                             ("x264-params=pass=1:stats=x264.log", "x264-params entry 'pass' is not allowed")]:
        prompt = _prompt("video/h264-mp4", "unknownopt/clip", codec_options=options)
        with pytest.raises(PromptRejected, match="codec_options") as info:
            server.run(prompt)
        assert message in str(info.value)
    assert target.read_text() == "precious"
    assert not os.path.exists(os.path.join(server.output_dir, "unknownopt"))  # not even the folder
