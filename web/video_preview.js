// VideoCombine preview for the stock ComfyUI frontend (the 2024 app.js and the current Vue frontend).
//
// Animated WebP / APNG / PNG sequences come back under `images` and the frontend shows them itself.
// GIF and browser-playable videos (MP4 H.264, WebM VP9/AV1) come back under `animatediff_preview`:
// current frontends hand any animated non-WebP/PNG file to a <video> element, which cannot play a GIF,
// and the 2024 frontend loads everything into <img>, which cannot play a video. So this extension
// shows them itself, under the node: <img> for a GIF, <video> (looping, muted, with controls) for a video.
// It also expands %date:...% and %Node.widget% in filename_prefix when the workflow is queued, as the
// frontend does for SaveImage (the server expands date tokens too, for API use).

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const NODE = "VideoCombine";
const WIDGET = "animatediff_preview";

let applyTextReplacements = null;
import("../../scripts/utils.js")
  .then((m) => { applyTextReplacements = m.applyTextReplacements ?? null; })
  .catch(() => {});

function viewUrl(item) {
  const params = new URLSearchParams({
    filename: item.filename,
    subfolder: item.subfolder ?? "",
    type: item.type ?? "output",
  });
  return api.apiURL(`/view?${params}&rand=${Math.random()}`);
}

function removePreview(node) {
  const i = node.widgets?.findIndex((w) => w.name === WIDGET) ?? -1;
  if (i > -1) {
    const [widget] = node.widgets.splice(i, 1);
    widget.onRemove?.();
    widget.element?.remove?.();
  }
}

function showPreview(node, item) {
  removePreview(node);
  if (!item) return;
  const container = document.createElement("div");
  container.style.cssText = "width:100%;display:flex;justify-content:center;";
  let aspect = 1;
  let media;
  if (item.media === "image") {
    media = document.createElement("img");
    media.onload = () => { aspect = media.naturalHeight / Math.max(1, media.naturalWidth); fit(); };
  } else {
    media = document.createElement("video");
    Object.assign(media, { controls: true, loop: true, muted: true, autoplay: true, playsInline: true });
    media.addEventListener("loadedmetadata", () => {
      aspect = media.videoHeight / Math.max(1, media.videoWidth);
      fit();
    });
    media.onerror = () => {
      container.textContent = `${item.filename}: this browser cannot play ${item.mime}`;
    };
  }
  media.style.cssText = "width:100%;max-height:100%;object-fit:contain;";
  media.src = viewUrl(item);
  container.appendChild(media);

  const height = () => Math.max(64, (node.size?.[0] ?? 256) * aspect);
  const widget = node.addDOMWidget(WIDGET, "preview", container, {
    serialize: false,
    hideOnZoom: false,
    getHeight: height,
    getMinHeight: height,
  });
  widget.serializeValue = () => undefined;
  function fit() {
    // Both frontends size DOM widgets from getMinHeight / getHeight; grow the node to fit the media.
    const size = node.computeSize?.();
    if (size && node.size[1] < size[1]) node.setSize([node.size[0], size[1]]);
    else node.setSize?.([node.size[0], node.size[1]]);
    node.setDirtyCanvas?.(true, true);
    app.graph?.setDirtyCanvas?.(true, true);
  }
  fit();
}

app.registerExtension({
  name: "AnimateDiff.VideoCombine.Preview",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE) return;

    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      const r = onExecuted?.apply(this, arguments);
      const items = message?.animatediff_preview;
      showPreview(this, items?.length ? items[0] : null);
      return r;
    };

    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = onNodeCreated?.apply(this, arguments);
      const prefix = this.widgets?.find((w) => w.name === "filename_prefix");
      if (prefix && !prefix.serializeValue) {
        prefix.serializeValue = () =>
          applyTextReplacements ? applyTextReplacements(app, prefix.value) : prefix.value;
      }
      return r;
    };
  },
});
