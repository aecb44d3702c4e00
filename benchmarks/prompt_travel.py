"""The cost of Prompt Travel against encoding every frame's prompt on its own.

The tiny SD1.5 checkpoint carries a full-size CLIP-L text encoder (random weights: the same work per call as
the real one), so the CLIP's share is realistic. For a clip of F frames with K keyframes, side by side in
one process:

* ``travel``: the Prompt Travel node (each distinct prompt encoded once, then blended per frame);
* ``per frame``: what a workflow without it would do: the host's CLIPTextEncode once per frame, on the
  frame's own prompt, then the F embeddings concatenated.

Both are counted (CLIP encode calls, through a wrapper around the CLIP object, nothing patched) and timed
(median of ``--repeats``). The script prints the calls of each, and the time ratio per frame / travel.

    .venv/bin/python benchmarks/prompt_travel.py [--frames 16 64 128] [--keyframes 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


class CountingClip:
    """The host's CLIP object, counting its encode calls (only this wrapper sees them)."""

    def __init__(self, clip):
        self._clip = clip
        self.encodes = 0

    def __getattr__(self, name):
        attr = getattr(self._clip, name)
        if not name.startswith("encode"):
            return attr

        def counted(*args, **kwargs):
            self.encodes += 1
            return attr(*args, **kwargs)
        return counted


def keyframe_text(frames: int, keyframes: int) -> tuple[str, list[str]]:
    """``keyframes`` evenly spaced 'FRAME: PROMPT' lines over ``frames``, and each frame's prompt as a
    workflow without prompt travel would write it (the last keyframe at or before the frame)."""
    subjects = ["a calm sea at dawn", "a storm at sea, lightning", "a calm sea at night, full moon",
                "a lighthouse in fog", "a sailing ship at sunset", "a frozen sea under stars"]
    starts = [round(i * (frames - 1) / max(keyframes - 1, 1)) for i in range(keyframes)]
    lines = [f"{start}: {subjects[i % len(subjects)]}" for i, start in enumerate(starts)]
    per_frame = [subjects[max(i for i, s in enumerate(starts) if s <= f) % len(subjects)] for f in range(frames)]
    return "\n".join(lines), per_frame


def timed(fn, repeats: int):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, nargs="+", default=[16, 64, 128])
    ap.add_argument("--keyframes", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import torch
    from tools.comfy_server import default_host_dir
    from tools.inprocess_host import load_checkpoint, load_host

    host = load_host(os.environ.get("COMFYUI_DIR") or default_host_dir())
    path = os.path.join(ROOT, ".cache", "models", "checkpoints", "tiny_sd15.safetensors")
    if not os.path.exists(path):
        sys.exit(f"{path} is missing: run `make setup` (scripts/setup.sh) first, it generates the tiny models")
    checkpoint = load_checkpoint(host, path)
    travel = host.pack.NODE_CLASS_MAPPINGS["PromptTravel"]()
    encode = host.nodes.CLIPTextEncode()
    print(f"host {host.dir}; CLIP-L full size (random weights), {torch.get_num_threads()} threads, "
          f"{args.keyframes} keyframes, median of {args.repeats}")
    with torch.inference_mode():
        # warm-up: the CLIP's first calls (model load, kernels' first runs) are not counted
        travel.encode(checkpoint.clip, "0: warm-up\n1: warm-up, again", 2)
        encode.encode(checkpoint.clip, "warm-up")
        for frames in args.frames:
            text, prompts = keyframe_text(frames, args.keyframes)
            clip = CountingClip(checkpoint.clip)
            out, t_travel = timed(lambda: travel.encode(clip, text, frames)[0], args.repeats)
            travel_calls = clip.encodes // args.repeats
            clip = CountingClip(checkpoint.clip)
            naive, t_naive = timed(lambda: torch.cat([encode.encode(clip, p)[0][0][0] for p in prompts]),
                                   args.repeats)
            naive_calls = clip.encodes // args.repeats
            assert out[0][0].shape[0] == naive.shape[0] == frames
            print(f"frames {frames:4d}: travel {travel_calls:3d} CLIP calls {t_travel:7.3f} s | per frame "
                  f"{naive_calls:4d} CLIP calls {t_naive:7.3f} s | ratio per frame / travel x{t_naive / t_travel:.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
