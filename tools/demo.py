"""The demo: text to animation through a real ComfyUI server, on the embedded tiny models.

Starts the host headless on a free loopback port, submits workflows/api/txt2vid_api.json (with the tiny
models and a small size substituted), shows progress (the sampler's steps, then the encoder's frames),
saves the animation under a name no earlier run used, stops the server and prints the file's path.
Run it through `make demo`, which prepares everything first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tools.comfy_server import ComfyServer, ExecutionFailed, PromptRejected  # noqa: E402
from tools.run_workflow import save_new  # noqa: E402
from tools.workflow import example_path  # noqa: E402

TINY_SETTINGS = {
    "CheckpointLoaderSimple": {"ckpt_name": "tiny_sd15.safetensors"},
    "LoadMotionModule": {"model_name": "tiny_mm_v2.safetensors"},
    "EmptyLatentImage": {"width": 128, "height": 128, "batch_size": 16},
    "KSampler": {"steps": 12},
}


def tiny_prompt(prompt: dict) -> dict:
    """The workflow with the tiny models and a CPU-friendly size put in."""
    out = json.loads(json.dumps(prompt))
    for node in out.values():
        node["inputs"].update(TINY_SETTINGS.get(node["class_type"], {}))
    return out


# What a node's progress bar counts, by node type (others show their type).
PROGRESS_LABELS = {"KSampler": "sampling", "KSamplerAdvanced": "sampling", "AnimateSampler": "sampling",
                   "VideoCombine": "encoding", "VAEDecode": "decoding"}


def progress_label(prompt: dict, node) -> str:
    class_type = prompt.get(str(node), {}).get("class_type") if node is not None else None
    return PROGRESS_LABELS.get(class_type, class_type or "working")


def progress_printer(prompt: dict):
    def show(value, total, node):
        width = 30
        filled = int(width * value / max(total, 1))
        label = progress_label(prompt, node)
        sys.stderr.write(f"\r[demo] {label:<9}[{'#' * filled}{'.' * (width - filled)}] {value}/{total}")
        if value >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()
    return show


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "demo_output"), help="folder for the animation")
    args = ap.parse_args()
    prompt = tiny_prompt(json.load(open(example_path("txt2vid_api.json"))))
    workflow = json.load(open(example_path("txt2vid.json")))
    workdir = os.path.join(ROOT, ".cache", "demo-server")
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    print("[demo] starting ComfyUI headless ...", file=sys.stderr)
    try:
        with ComfyServer(workdir) as server:
            print(f"[demo] server up at {server.url}; submitting workflows/api/txt2vid_api.json", file=sys.stderr)
            history = server.run(prompt, workflow, on_progress=progress_printer(prompt))
            item = next(item for out in history["outputs"].values() for item in out.get("images", []))
            data = server.fetch_output(item)
    except (PromptRejected, ExecutionFailed) as e:
        sys.exit(f"[demo] failed: {e}")
    os.makedirs(args.out, exist_ok=True)
    # Each run's server numbers its outputs from 1 again: the file gets a name no earlier run used.
    path = save_new(os.path.join(args.out, os.path.basename(item["filename"])), data)
    print("[demo] server stopped", file=sys.stderr)
    print(path)


if __name__ == "__main__":
    main()
