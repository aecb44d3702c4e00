"""Memory of loading a long clip for video to video: Load Video (frames) + VAE Encode against Load Video
(latents), which decodes and encodes ``encode_batch`` frames at a time.

A test clip (grey frames with a moving square, H.264) of each ``--frames`` count is written to a temporary
folder; each point loads it in a fresh process through the pack's node in the in-process host, with the tiny
checkpoint's VAE, and reports the peak RSS rise during the load (restarted after the host and the VAE are
loaded; every allocation over 64 KiB gets its own mapping so the number follows live memory). The ratio of the
largest clip's rise to the smallest's should stay near 1 for latents; for frames it grows with the clip.

    .venv/bin/python benchmarks/video_in_memory.py [--frames 100 1000] [--size 256] [--variants frames latents]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.context_memory import peak_rss_mb, reset_peak_rss  # noqa: E402


def make_clip(path: str, frames: int, size: int, rate: int = 24):
    import av
    import numpy as np
    with av.open(path, "w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for i in range(frames):
            a = np.full((size, size, 3), (16 + i) % 240, np.uint8)
            x = (4 * i) % (size - 16)
            a[8:24, x:x + 16] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def measure(folder: str, name: str, variant: str) -> dict:
    import torch
    from tools.comfy_server import default_host_dir
    from tools.inprocess_host import load_checkpoint, load_host

    host = load_host(os.environ.get("COMFYUI_DIR") or default_host_dir())
    host.folder_paths.get_input_directory = lambda: folder  # this process only: the clip's folder as input
    vae = load_checkpoint(host, os.path.join(ROOT, ".cache", "models", "checkpoints", "tiny_sd15.safetensors")).vae
    selection = dict(force_rate=0.0, frame_load_cap=0, skip_first_frames=0, select_every_nth=1, custom_width=0,
                     custom_height=0, multiple_of_8=True)
    nodes = host.pack.NODE_CLASS_MAPPINGS
    with torch.inference_mode():
        host.comfy.model_management.load_models_gpu([vae.patcher])
        reset_peak_rss()
        baseline = peak_rss_mb()
        if variant == "frames":
            images = nodes["LoadVideoFrames"]().load(name, **selection)[0]
            latent = host.nodes.VAEEncode().encode(vae, images)[0]
            del images
        else:
            latent = nodes["LoadVideoLatents"]().load(name, **selection, vae=vae, encode_batch=16)[0]
    return {"variant": variant, "frames": int(latent["samples"].shape[0]), "rise_mb": peak_rss_mb() - baseline}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--variants", nargs="+", choices=["frames", "latents"], default=["frames", "latents"])
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child)))
        return
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    with tempfile.TemporaryDirectory() as folder:
        rows = {}
        for frames in args.frames:
            name = f"clip_{frames}.mp4"
            make_clip(os.path.join(folder, name), frames, args.size)
            for variant in args.variants:
                out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", folder, name, variant],
                                     capture_output=True, text=True, env=env)
                if out.returncode:
                    raise RuntimeError(out.stderr[-3000:])
                row = json.loads(out.stdout.strip().splitlines()[-1])
                rows[(frames, variant)] = row
                print(f"{frames:5d} frames at {args.size}x{args.size}, {variant:7s}: peak RSS rise "
                      f"{row['rise_mb']:8.1f} MB", flush=True)
        small, large = args.frames[0], args.frames[-1]
        for variant in args.variants:
            ratio = rows[(large, variant)]["rise_mb"] / max(rows[(small, variant)]["rise_mb"], 1e-9)
            print(f"{variant}: {large} / {small} frames x{ratio:.2f}")


if __name__ == "__main__":
    main()
