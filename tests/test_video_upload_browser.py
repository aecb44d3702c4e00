"""The video loaders' upload button as a person uses it: headless Chromium opens the frontend served by the
test server (the 2024 one, or current ComfyUI's with COMFYUI_DIR), builds Load Video (frames) -> Video
Combine, picks a clip with the node's file picker (web/video_upload.js), sees it previewed under the node,
queues the graph from the page and gets the frames back as a playable video under Video Combine."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request

import pytest

from tests.test_load_video import make_video
from tests.test_video_browser import CHROMIUM, PREVIEW, Page, browser  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium to drive")

BUILD = """(async () => {
  app.graph.clear();
  const set = (n, name, v) => { n.widgets.find(w => w.name === name).value = v; };
  const load = LiteGraph.createNode("LoadVideoFrames");
  app.graph.add(load);
  set(load, "frame_load_cap", 6); set(load, "custom_width", 64); set(load, "custom_height", 48);
  const vc = LiteGraph.createNode("VideoCombine");
  vc.pos = [400, 50];
  app.graph.add(vc);
  load.connect(0, vc, vc.findInputSlot("images"));
  set(vc, "format", "video/h264-mp4"); set(vc, "frame_rate", 6); set(vc, "filename_prefix", "upload/clip");
  window.__load = load; window.__vc = vc;
  return load.widgets.map(w => w.name);
})()"""

INPUT_PREVIEW = """(() => {
  const w = window.__load.widgets.find(w => w.name === "animatediff_video_input_preview");
  const v = w?.video;
  if (!v || v.readyState < 2 || !v.videoWidth) return null;
  return {value: window.__load.widgets.find(w => w.name === "video").value, width: v.videoWidth,
          height: v.videoHeight, src: v.src, error: v.error ? v.error.code : null};
})()"""


async def _upload_and_run(port, server, clip):
    import aiohttp
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as r:
        targets = [t for t in json.loads(r.read()) if t["type"] == "page"]
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            page = Page(ws)
            await page.call("Page.enable")
            await page.call("Page.navigate", url=server.url)
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
            result = await page.wait_for(PREVIEW.replace("window.__vc", "window.__vc"), timeout=180)
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
    # queued from the page: the loaded frames (resized to 64x48) came back as a playable video
    assert result["tag"] == "VIDEO" and result["error"] is None
    assert (result["width"], result["height"]) == (64, 48)
