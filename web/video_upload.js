// Upload button and preview for the video loaders (Load Video (frames), Load Video (latents)), in the 2024
// app.js frontend and the current Vue frontend alike.
//
// "choose video to upload" opens the browser's file picker (one <input type=file> per node, kept in the page,
// accepting video files); the chosen file goes to the host's own /upload/image route (which stores any file
// type in the input folder on both hosts), its name is added to the `video` list and selected. Whatever the
// `video` widget names is shown under the node as a muted, looping <video> served by /view?type=input.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const NODES = ["LoadVideoFrames", "LoadVideoLatents"];
const PREVIEW = "animatediff_video_input_preview";
const ACCEPT = "video/*,.mkv,.mov,.avi,.m4v,.gif,.webm,.ts,.m2ts,.mpg,.mpeg,.wmv,.flv,.ogv,.3gp";

function inputUrl(name) {
  const slash = name.lastIndexOf("/");
  const params = new URLSearchParams({
    filename: slash < 0 ? name : name.slice(slash + 1),
    subfolder: slash < 0 ? "" : name.slice(0, slash),
    type: "input",
  });
  return api.apiURL(`/view?${params}&rand=${Math.random()}`);
}

function removePreview(node) {
  const i = node.widgets?.findIndex((w) => w.name === PREVIEW) ?? -1;
  if (i > -1) {
    const [widget] = node.widgets.splice(i, 1);
    widget.onRemove?.();
    widget.element?.remove?.();
    node.setSize?.([node.size[0], node.computeSize?.()[1] ?? node.size[1]]);
    node.setDirtyCanvas?.(true, true);
  }
}

// The preview takes room under the node only once the browser has loaded the clip: a workflow naming a file
// this server does not have keeps its saved layout.
function showPreview(node, name) {
  const video = document.createElement("video");
  Object.assign(video, { controls: true, loop: true, muted: true, autoplay: true, playsInline: true });
  video.style.cssText = "width:100%;max-height:100%;object-fit:contain;";
  node.animatediffPreviewSource = name;
  video.addEventListener("loadedmetadata", () => {
    if (node.animatediffPreviewSource !== name) return; // another clip was chosen meanwhile
    removePreview(node);
    const aspect = video.videoHeight / Math.max(1, video.videoWidth);
    const container = document.createElement("div");
    container.style.cssText = "width:100%;display:flex;justify-content:center;";
    container.appendChild(video);
    const height = () => Math.max(64, (node.size?.[0] ?? 256) * aspect);
    const widget = node.addDOMWidget(PREVIEW, "preview", container, {
      serialize: false, hideOnZoom: false, getHeight: height, getMinHeight: height,
    });
    widget.serializeValue = () => undefined;
    widget.video = video;
    const size = node.computeSize?.();
    if (size && node.size[1] < size[1]) node.setSize([node.size[0], size[1]]);
    node.setDirtyCanvas?.(true, true);
  });
  video.addEventListener("error", () => {
    if (node.animatediffPreviewSource === name) removePreview(node);
  });
  if (name) video.src = inputUrl(name);
  else removePreview(node);
}

async function upload(node, file) {
  const body = new FormData();
  body.append("image", file, file.name);
  body.append("overwrite", "true");
  const response = await api.fetchApi("/upload/image", { method: "POST", body });
  if (response.status !== 200) {
    throw new Error(`${response.status} ${response.statusText}`);
  }
  const data = await response.json();
  const name = data.subfolder ? `${data.subfolder}/${data.name}` : data.name;
  const combo = node.widgets.find((w) => w.name === "video");
  if (!combo.options.values.includes(name)) combo.options.values.push(name);
  combo.value = name;
  combo.callback?.(name);
  return name;
}

app.registerExtension({
  name: "AnimateDiff.VideoInput.Upload",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!NODES.includes(nodeData?.name)) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = onNodeCreated?.apply(this, arguments);
      const node = this;
      const combo = node.widgets?.find((w) => w.name === "video");
      if (!combo) return r;
      const picker = document.createElement("input");
      Object.assign(picker, { type: "file", accept: ACCEPT });
      picker.style.display = "none";
      picker.dataset.animatediffUpload = String(node.id);
      picker.addEventListener("change", async () => {
        const file = picker.files?.[0];
        if (!file) return;
        try {
          await upload(node, file);
        } catch (error) {
          alert(`Uploading ${file.name} failed: ${error.message}`);
        } finally {
          picker.value = "";
        }
      });
      document.body.appendChild(picker);
      const button = node.addWidget("button", "choose video to upload", "video", () => picker.click());
      button.serialize = false;
      button.serializeValue = () => undefined;
      const onRemoved = node.onRemoved;
      node.onRemoved = function () {
        picker.remove();
        return onRemoved?.apply(this, arguments);
      };
      const changed = combo.callback;
      combo.callback = function (value) {
        const out = changed?.apply(this, arguments);
        showPreview(node, value);
        return out;
      };
      if (combo.value) requestAnimationFrame(() => showPreview(node, combo.value));
      return r;
    };
  },
});
