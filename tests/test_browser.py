"""The example workflows in a real browser: Debian's Chromium, driven by playwright, on the frontend
the session's server serves (the 2024 host's bundled LiteGraph app, or current ComfyUI's Vue
frontend when COMFYUI_DIR points to one).

* every UI workflow, dropped on the canvas as a file (a drop event carrying a File), loads with no
  missing and no red nodes, its widget values as in the file, its links as in the file, and no two
  nodes overlapping as the frontend draws them;
* text-to-video queued from the page (Ctrl+Enter) shows its animated preview in our output node;
* each output format that embeds the workflow, dropped on the canvas, restores that workflow.

Screenshots and the browser's console go to artifacts/. Skipped, with the reason, when playwright or
Chromium is missing (scripts/setup.sh installs both).
"""

from __future__ import annotations

import base64
import glob
import json
import os
import threading
import urllib.request

import pytest

from tools import workflow as wf
from video import FORMATS

try:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.path.join(ROOT, "artifacts")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
UI_FILES = sorted(p for p in glob.glob(os.path.join(wf.EXAMPLES, "*.json")) if not p.endswith("_api.json"))

pytestmark = [
    pytest.mark.skipif(sync_playwright is None,
                       reason="playwright is not installed (pip install -r requirements-dev.txt, or scripts/setup.sh)"),
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason=f"no Chromium at {CHROMIUM} (apt-get install chromium as root, or scripts/setup.sh)"),
]

MIME = {"webp": "image/webp", "png": "image/png", "gif": "image/gif", "mp4": "video/mp4", "webm": "video/webm",
        "mov": "video/quicktime", "mkv": "video/x-matroska"}
# The file types each frontend reads a workflow from (its app.handleFile): the 2024 app.js reads PNG
# and WebP; the Vue frontend adds WebM, MP4/MOV (ISO-BMFF), FLAC, MP3, Ogg, AVIF, SVG and GLB.
READS = {"legacy": {"image/png", "image/webp"},
         "vue": {"image/png", "image/webp", "video/webm", "video/mp4", "video/quicktime"}}

DROP = """async ([name, b64, mime]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const file = new File([bytes], name, {type: mime});
  const transfer = new DataTransfer();
  transfer.items.add(file);
  const canvas = app.canvasEl || document.querySelector("canvas");
  const box = canvas.getBoundingClientRect();
  const at = {clientX: box.left + 12, clientY: box.bottom - 12};  // an empty corner of the canvas
  for (const type of ["dragenter", "dragover", "drop"]) {
    canvas.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: transfer, ...at}));
  }
}"""

GRAPH = """() => {
  const data = app.graph.serialize();
  // links as [id, origin, origin slot, target, target input NAME, type]: frontends number a node's input
  // sockets differently (the Vue frontend gives every widget a socket), the names are what counts
  const links = (data.links || []).map((l) => Array.isArray(l) ? l.slice(0, 6)
      : [l.id, l.origin_id, l.origin_slot, l.target_id, l.target_slot, l.type]).map((l) => {
    const target = data.nodes.find((n) => n.id === l[3]);
    return [l[0], l[1], l[2], l[3], target?.inputs?.[l[4]]?.name ?? l[4], l[5]];
  });
  const nodes = data.nodes.map((n) => {
    const live = app.graph.getNodeById(n.id);
    return {id: n.id, type: n.type, title: live?.title, mode: n.mode, widgets_values: n.widgets_values ?? null,
            registered: !!LiteGraph.registered_node_types[n.type], has_errors: !!live?.has_errors,
            bounding: live ? Array.from(live.getBounding()) : null};
  });
  const dialogs = [...document.querySelectorAll("[role=dialog], .comfy-modal, .p-dialog")]
      .filter((d) => d.offsetParent !== null).map((d) => d.innerText.slice(0, 300));
  const errors = app.lastNodeErrors;
  return {nodes, links, dialogs, lastNodeErrors: errors && Object.keys(errors).length ? errors : null};
}"""

PREVIEW = """(nodeId) => {
  const node = app.graph.getNodeById(nodeId);
  if (!node) return null;
  for (const widget of node.widgets || []) {
    const el = widget.element || widget.inputEl;
    if (!el) continue;
    const imgs = el.tagName === "IMG" ? [el] : [...(el.querySelectorAll?.("img") || [])];
    for (const img of imgs) {
      if (img.src.includes("/view?") && img.complete && img.naturalWidth > 0 && img.isConnected)
        return {src: img.src, width: img.naturalWidth, height: img.naturalHeight, widget: widget.name,
                shown: img.getBoundingClientRect().width > 0};
    }
  }
  return null;
}"""


def in_thread(fn, *args, **kwargs):
    """Run fn in another thread (server.run uses asyncio, which must not meet playwright's loop)."""
    box = {}

    def target():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            box["error"] = e
    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


class Frontend:
    def __init__(self, page, server):
        self.page, self.server = page, server
        info = page.evaluate("() => ({version: window.__COMFYUI_FRONTEND_VERSION__ ?? null, "
                             "vue: !!document.querySelector('#vue-app')})")
        self.kind = "vue" if info["vue"] or info["version"] else "legacy"
        self.version = info["version"] or "bundled 2024"

    def shot(self, name):
        os.makedirs(ARTIFACTS, exist_ok=True)
        path = os.path.join(ARTIFACTS, f"browser-{self.kind}-{name}.png")
        self.page.screenshot(path=path)
        return path

    def drop(self, name, data: bytes, mime: str, expect_nodes: int):
        """Clear the canvas, drop the file, wait until the graph holds ``expect_nodes`` nodes."""
        self.page.evaluate("() => app.graph.clear()")
        self.page.evaluate(DROP, [name, base64.b64encode(data).decode(), mime])
        self.page.wait_for_function(f"() => app.graph._nodes.length === {expect_nodes}", timeout=30000)
        self.page.wait_for_timeout(300)  # let the frontend finish configuring (widget conversions, sizes)
        return self.graph()

    def graph(self):
        return self.page.evaluate(GRAPH)


@pytest.fixture(scope="module")
def frontend(server):
    # The Vue frontend opens a template picker on a first visit; a user who has seen it has this set.
    request = urllib.request.Request(server.url + "/settings/Comfy.TutorialCompleted", data=b"true", method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except OSError:
        pass  # the 2024 host keeps no such setting
    console = []
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        except PlaywrightError as e:
            pytest.skip(f"Chromium at {CHROMIUM} did not start under playwright: {str(e).splitlines()[0]}")
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        page.goto(server.url)
        page.wait_for_function("() => window.app && app.graph && window.LiteGraph"
                               " && LiteGraph.registered_node_types['VideoCombine']"
                               " && LiteGraph.registered_node_types['LoadVideoFrames']", timeout=120000)
        page.wait_for_timeout(500)
        ui = Frontend(page, server)
        yield ui
        os.makedirs(ARTIFACTS, exist_ok=True)
        with open(os.path.join(ARTIFACTS, f"browser-{ui.kind}-console.log"), "w") as f:
            f.write("\n".join(console) + "\n")
        browser.close()


def load(path):
    with open(path) as f:
        return json.load(f)


def assert_graph_is(graph, workflow, object_info, frontend):
    """The graph in the page is ``workflow``: same nodes, titles, links, and widget values (values the
    file leaves out, for widgets added after it was saved, are the inputs' defaults)."""
    by_id = {n["id"]: n for n in graph["nodes"]}
    assert sorted(by_id) == sorted(n["id"] for n in workflow["nodes"])
    assert not [n["type"] for n in graph["nodes"] if not n["registered"]], "missing node types"
    assert not [n["id"] for n in graph["nodes"] if n["has_errors"]], "red nodes"
    assert graph["lastNodeErrors"] is None
    assert not [d for d in graph["dialogs"] if "missing" in d.lower() or "not found" in d.lower()], graph["dialogs"]
    for node in workflow["nodes"]:
        live = by_id[node["id"]]
        assert live["type"] == node["type"]
        if node.get("title"):
            assert live["title"] == node["title"]
        saved = node.get("widgets_values") or []
        shown = live["widgets_values"] or []
        assert shown[:len(saved)] == saved, f"{frontend.kind}: node {node['id']} ({node['type']}) widgets"
        if len(shown) > len(saved):
            info = object_info[node["type"]]
            for name, index in wf.widget_slots(info):
                if index >= len(saved) and index < len(shown):
                    default = wf.input_spec(info, name)[1].get("default")
                    if default is not None:
                        assert shown[index] == default, f"node {node['id']}.{name}: {shown[index]!r} is not the default"
    nodes = {n["id"]: n for n in workflow["nodes"]}
    saved_links = [(l[0], l[1], l[2], l[3], nodes[l[3]]["inputs"][l[4]]["name"], l[5]) for l in workflow["links"]]
    assert sorted(map(tuple, graph["links"])) == sorted(saved_links)


def boxes_overlap(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: os.path.basename(p))
def test_workflow_loads_as_saved(frontend, server, path):
    workflow = load(path)
    graph = frontend.drop(os.path.basename(path), open(path, "rb").read(), "application/json", len(workflow["nodes"]))
    frontend.shot(os.path.basename(path)[:-5])
    assert_graph_is(graph, workflow, server.object_info, frontend)
    drawn = [(n["id"], n["bounding"]) for n in graph["nodes"]]
    for i, (a_id, a) in enumerate(drawn):
        for b_id, b in drawn[i + 1:]:
            assert not boxes_overlap(a, b), f"{frontend.kind}: nodes {a_id} and {b_id} overlap as drawn"


def tiny_txt2vid(object_info, fmt="image/webp", prefix="browser/txt2vid"):
    """workflows/txt2vid.json with the tiny models, 64x64, 8 frames, 2 steps (its widgets edited)."""
    workflow = load(os.path.join(ROOT, "workflows", "txt2vid.json"))
    for node_id, name, value in [(1, "ckpt_name", "tiny_sd15.safetensors"), (5, "model_name", "tiny_mm_v2.safetensors"),
                                 (4, "width", 64), (4, "height", 64), (4, "batch_size", 8), (7, "steps", 2),
                                 (9, "filename_prefix", prefix), (9, "format", fmt)]:
        assert wf.set_widget_value(workflow, object_info, node_id, name, value)
    return workflow


def test_queue_txt2vid_from_the_page(frontend, server):
    workflow = tiny_txt2vid(server.object_info)
    graph = frontend.drop("txt2vid_tiny.json", json.dumps(workflow).encode(), "application/json",
                          len(workflow["nodes"]))
    assert_graph_is(graph, workflow, server.object_info, frontend)
    frontend.page.evaluate("() => document.activeElement?.blur?.()")
    frontend.page.keyboard.press("Control+Enter")  # the frontend's "queue prompt" shortcut
    preview = frontend.page.wait_for_function(PREVIEW, arg=9, timeout=600000).json_value()
    frontend.shot("txt2vid-queued")
    assert "filename=txt2vid_" in preview["src"] and "type=output" in preview["src"]
    assert "subfolder=browser" in preview["src"]
    assert (preview["width"], preview["height"]) == (64, 64) and preview["shown"]
    assert frontend.graph()["lastNodeErrors"] is None
    # the file the page shows is the one the server wrote, an 8-frame animation
    from PIL import Image, ImageSequence
    query = preview["src"].split("/view?", 1)[1]
    data = urllib.request.urlopen(f"{server.url}/view?{query}", timeout=30).read()
    import io
    frames = list(ImageSequence.Iterator(Image.open(io.BytesIO(data))))
    assert len(frames) == 8


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_output_restores_its_workflow(frontend, server, fmt, tmp_path):
    from tests.test_video_support import embedded_metadata
    choices = wf.input_spec(server.object_info["VideoCombine"], "format")[0]
    if fmt not in choices:
        pytest.skip(f"this server's VideoCombine cannot write {fmt} (its encoder is not available)")
    workflow = tiny_txt2vid(server.object_info, fmt=fmt, prefix=f"browser/restore_{fmt.replace('/', '_')}")
    prompt = wf.ui_to_api(workflow, server.object_info)
    history = in_thread(server.run, prompt, workflow, timeout=600)  # upstream nodes are cached after the first
    items = [i for key in ("images", "animatediff_preview") for i in history["outputs"]["9"].get(key, [])]
    item = items[0]
    if item.get("type") == "temp":
        # a format browsers cannot show comes back as a preview; the file itself is in the output folder
        stem = os.path.join(server.output_dir, "browser", f"restore_{fmt.replace('/', '_')}_")
        (real,) = [p for p in glob.glob(stem + "*") if not p.endswith(".json")]
        item = {"filename": os.path.basename(real), "subfolder": "browser", "type": "output"}
    path = tmp_path / item["filename"]
    path.write_bytes(server.fetch_output(item))
    metadata = embedded_metadata(str(path))
    if "workflow" not in metadata:
        pytest.skip(f"{fmt} files do not carry the workflow")
    assert metadata["workflow"] == workflow
    mime = MIME[item["filename"].rsplit(".", 1)[-1].lower()]
    if mime not in READS[frontend.kind]:
        pytest.skip(f"{fmt} embeds the workflow, but the {frontend.kind} frontend ({frontend.version}) does not read "
                    f"workflows from {mime} files")
    graph = frontend.drop(item["filename"], path.read_bytes(), mime, len(workflow["nodes"]))
    frontend.shot(f"restored-{fmt.replace('/', '_')}")
    assert_graph_is(graph, workflow, server.object_info, frontend)
