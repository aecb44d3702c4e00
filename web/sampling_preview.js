// Animated preview while sampling (2024 app.js frontend and current Vue frontend): the server sends the
// sampler's current prediction of every frame as one animated WebP (comfy_host/preview.py, event
// "animatediff.preview"); it is shown under the node that is sampling, replacing the previous one, and
// removed when that node's run ends. The setting switches it on the server (POST /animatediff/preview),
// so with it off nothing is computed.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const SETTING = "AnimateDiff.AnimatedPreview";
const WIDGET = "animatediff_sampling_preview";

async function tellServer(enabled) {
  try {
    await api.fetchApi("/animatediff/preview", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ enabled: !!enabled }),
    });
  } catch (error) {
    console.warn("AnimateDiff: could not switch the animated preview", error);
  }
}

function show(node, detail) {
  let widget = node.widgets?.find((w) => w.name === WIDGET);
  if (!widget) {
    const container = document.createElement("div");
    container.style.cssText = "width:100%;display:flex;justify-content:center;";
    const img = document.createElement("img");
    img.style.cssText = "width:100%;max-height:100%;object-fit:contain;image-rendering:auto;";
    container.appendChild(img);
    let aspect = 1;
    img.onload = () => {
      aspect = img.naturalHeight / Math.max(1, img.naturalWidth);
      const size = node.computeSize?.();
      if (size && node.size[1] < size[1]) node.setSize([node.size[0], size[1]]);
      node.setDirtyCanvas?.(true, true);
    };
    const height = () => Math.max(64, (node.size?.[0] ?? 256) * aspect);
    widget = node.addDOMWidget(WIDGET, "preview", container, {
      serialize: false, hideOnZoom: false, getHeight: height, getMinHeight: height,
    });
    widget.serializeValue = () => undefined;
    widget.img = img;
  }
  widget.img.src = `data:image/webp;base64,${detail.image}`;
  widget.img.dataset.frames = String(detail.frames);
}

function remove(node) {
  const i = node.widgets?.findIndex((w) => w.name === WIDGET) ?? -1;
  if (i > -1) {
    const [widget] = node.widgets.splice(i, 1);
    widget.onRemove?.();
    widget.element?.remove?.();
    node.setDirtyCanvas?.(true, true);
  }
}

let previewed = null; // the node that shows a preview now

app.registerExtension({
  name: "AnimateDiff.SamplingPreview",
  async setup() {
    const enabled = app.ui.settings.getSettingValue(SETTING, true);
    await tellServer(enabled);
    api.addEventListener("animatediff.preview", ({ detail }) => {
      const node = app.graph.getNodeById(detail?.node);
      if (!node) return;
      if (previewed && previewed !== node) remove(previewed);
      previewed = node;
      show(node, detail);
    });
    api.addEventListener("executing", ({ detail }) => {
      // a new node runs (or the prompt ends): the last sampler's preview has served its purpose
      const id = detail && typeof detail === "object" ? detail.node : detail;
      if (previewed && String(previewed.id) !== String(id)) {
        remove(previewed);
        previewed = null;
      }
    });
  },
  async init() {
    app.ui.settings.addSetting({
      id: SETTING,
      name: "AnimateDiff: animated preview of all frames while sampling",
      type: "boolean",
      defaultValue: true,
      onChange: (value) => tellServer(value),
    });
  },
});
