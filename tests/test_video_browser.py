"""The preview as a person sees it: headless Chromium opens the ComfyUI frontend served by the test
server, builds EmptyImage -> VideoCombine, queues it from the page, and the pack's web extension must
show the result under the node, playable (<video> for MP4/WebM, <img> for GIF). Skipped when no
Chromium is installed. Driven over the DevTools protocol with aiohttp (which every ComfyUI has)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import pytest

from video import FORMATS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium to drive")


class Page:
    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0

    async def call(self, method, **params):
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json(timeout=60)
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    async def eval(self, expression):
        result = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(json.dumps(result["exceptionDetails"])[:2000])
        return result["result"].get("value")

    async def wait_for(self, expression, timeout=60.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = await self.eval(expression)
            if value:
                return value
            await asyncio.sleep(0.25)
        raise TimeoutError(f"waited {timeout:.0f} s for: {expression}")


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="chromium-")
    proc = subprocess.Popen([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--remote-debugging-port=0", f"--user-data-dir={profile}",
                             "--autoplay-policy=no-user-gesture-required", "--window-size=1400,1000",
                             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file = os.path.join(profile, "DevToolsActivePort")
    deadline = time.time() + 30
    while not os.path.exists(port_file) and time.time() < deadline:
        time.sleep(0.1)
    if not os.path.exists(port_file):
        proc.kill()
        pytest.skip("Chromium did not start")
    port = int(open(port_file).read().split()[0])
    yield port
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(profile, ignore_errors=True)


SCRIPT = """(async () => {
  app.graph.clear();
  const src = LiteGraph.createNode("EmptyImage");
  const set = (n, name, v) => { n.widgets.find(w => w.name === name).value = v; };
  set(src, "width", 64); set(src, "height", 48); set(src, "batch_size", 8); set(src, "color", 0xE0A080);
  app.graph.add(src);
  const vc = LiteGraph.createNode("VideoCombine");
  vc.pos = [300, 50];
  app.graph.add(vc);
  src.connect(0, vc, vc.findInputSlot("images"));
  set(vc, "format", %(format)s);
  set(vc, "filename_prefix", "browser/%%date:yyyy%%/clip");
  window.__vc = vc;
  await app.queuePrompt(0);
  return vc.id;
})()"""

PREVIEW = """(() => {
  const w = window.__vc?.widgets?.find(w => w.name === "animatediff_preview");
  const m = w?.element?.querySelector("video, img");
  if (!m) return null;
  const ready = m.tagName === "VIDEO" ? m.readyState >= 2 && m.videoWidth > 0 : m.complete && m.naturalWidth > 0;
  if (!ready) return null;
  return {tag: m.tagName, src: m.src, width: m.videoWidth ?? m.naturalWidth, height: m.videoHeight ?? m.naturalHeight,
          paused: m.paused ?? null, error: m.error ? m.error.code : null};
})()"""


@contextlib.asynccontextmanager
async def open_page(port, url):
    """The browser's tab (DevTools port ``port``) navigated to ``url``, as a Page."""
    import aiohttp
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as r:
        targets = [t for t in json.loads(r.read()) if t["type"] == "page"]
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            page = Page(ws)
            await page.call("Page.enable")
            await page.call("Page.navigate", url=url)
            yield page


async def _run(port, server, format_name, shot):
    async with open_page(port, server.url) as page:
        await page.wait_for("typeof window.app !== 'undefined' && !!window.app.graph && "
                            "!!LiteGraph.registered_node_types['VideoCombine'] && "
                            "!!LiteGraph.registered_node_types['VideoCombine'].prototype.onExecuted")
        await page.eval(SCRIPT % {"format": json.dumps(format_name)})
        preview = await page.wait_for(PREVIEW, timeout=120)
        await asyncio.sleep(0.5)
        png = await page.call("Page.captureScreenshot", format="png")
        with open(shot, "wb") as f:
            f.write(base64.b64decode(png["data"]))
        return preview


@pytest.mark.parametrize("format_name,tag", [("image/gif", "IMG"), ("video/h264-mp4", "VIDEO"),
                                             ("video/vp9-webm", "VIDEO")])
def test_preview_plays_under_the_node_in_the_stock_frontend(server, browser, format_name, tag):
    if format_name not in FORMATS:
        pytest.skip(f"{format_name} is not available here")
    shot = os.path.join(ROOT, "artifacts", f"preview_{format_name.replace('/', '_')}.png")
    os.makedirs(os.path.dirname(shot), exist_ok=True)
    preview = asyncio.run(_run(browser, server, format_name, shot))
    assert preview["tag"] == tag and preview["error"] is None
    assert (preview["width"], preview["height"]) == (64, 48)  # the browser decoded the frames
    assert "subfolder=browser%2F20" in preview["src"]  # %date:yyyy% was expanded when queued
    if tag == "VIDEO":
        assert preview["paused"] is False  # looping, muted autoplay
