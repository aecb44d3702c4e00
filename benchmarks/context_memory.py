"""Peak memory of sampling vs frame count, with context windows (ContextScheduler, length 16).

Each frame count runs in a fresh process (peak RSS only grows within a process): load the tiny SD1.5
checkpoint and motion module in-process, sample one step, and report how much the peak resident
memory rose during sampling. With context windows that rise must stay flat: the script prints the
ratio of the largest frame count's rise to the smallest's (target <= 1.2).

``--controlnet`` applies the tiny SD1.5 ControlNet (.cache/models/controlnet/tiny_controlnet_sd15.safetensors)
to both conditionings with one hint image per frame, at the latent size x 8, before sampling. The hint
(frames x H x W x 3 float32) is the input and is made before the baseline, like the latent; the host
still makes its own resized copy of it while sampling (every host does, windows or not), so the script
also prints the hint's size and the rise minus that size, and the ratio is taken on the latter: the
flatness claim is about the sampling, not the input.

``--sparsectrl`` applies the tiny scribble SparseCtrl (.cache/models/controlnet/tiny_sparsectrl_scribble.safetensors)
with three keyframes (first, middle and last frame) instead.

    .venv/bin/python benchmarks/context_memory.py [--frames 16 32 64 128] [--size 128] [--controlnet | --sparsectrl]

The host is the default one (tools/comfy_server.default_host_dir: the 2024 host) or ``COMFYUI_DIR``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's VmHWM, where there is one: getrusage's ru_maxrss
    survives exec, so a child started by a large parent would report the parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_rss() -> bool:
    """Restart the peak-RSS count from the current RSS (Linux: writing 5 to /proc/self/clear_refs), so
    a peak reached while loading does not hide a smaller one while sampling. False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def hint_mb(frames: int, size: int) -> float:
    """Size of the ControlNet hint :func:`measure` makes: frames x (latent x 8)^2 x 3 float32."""
    side = size // 8 * 8
    return frames * side * side * 3 * 4 / 2 ** 20


def measure(frames: int, size: int, context_length: int | None, controlnet: bool = False,
            sparsectrl: bool = False) -> dict:
    import torch
    from tools.comfy_server import default_host_dir
    from tools.inprocess_host import load_checkpoint, load_host
    models = os.path.join(ROOT, ".cache", "models")
    host = load_host(default_host_dir())
    sd15 = load_checkpoint(host, os.path.join(models, "checkpoints", "tiny_sd15.safetensors"))
    motion = host.motion_modules.load_motion_model(os.path.join(models, "animatediff_models", "tiny_mm_v2.safetensors"))
    model = host.host_module.apply_motion_model(sd15.model, motion, 1.0, motion.format.beta_schedule)
    if context_length:
        # the pack's own class (the host puts its comfy/ folder first on sys.path: "samplers" is its)
        ContextOptions = importlib.import_module(host.pack.__name__ + ".samplers").ContextOptions
        model = host.host_module.set_context_options(model, ContextOptions(context_length, 4))
    latent = torch.zeros(frames, 4, size // 8, size // 8)
    g = torch.Generator().manual_seed(0)
    cond = [[torch.randn(1, 77, 768, generator=g), {}]]
    positive = negative = cond
    models_to_load = [model]
    if controlnet:
        # one hint image per frame at the latent size x 8, in [0, 1], as a LoadImage batch holds it
        side = size // 8 * 8
        hint = torch.rand(frames, side, side, 3, generator=g)
        control = host.comfy.controlnet.load_controlnet(
            os.path.join(models, "controlnet", "tiny_controlnet_sd15.safetensors"))
        positive, negative = host.nodes.ControlNetApplyAdvanced().apply_controlnet(
            positive=cond, negative=cond, control_net=control, image=hint, strength=1.0, start_percent=0.0,
            end_percent=1.0)[:2]
        models_to_load += control.get_models()
    if sparsectrl:
        module = host.host_module.sparse_control
        loaded = module.LoadedSparseCtrl(module.load_sparse_ctrl(
            os.path.join(models, "controlnet", "tiny_sparsectrl_scribble.safetensors")))
        side = size // 8 * 8
        keyframes = torch.rand(3, side, side, 3, generator=g)
        indices = f"0, {frames // 2}, {frames - 1}"
        positive, negative = host.pack.NODE_CLASS_MAPPINGS["ApplySparseCtrl"]().apply(
            cond, cond, loaded, keyframes, indices, {"samples": latent}, 1.0, 0.0, 1.0, None)[:2]
    with torch.inference_mode():
        host.comfy.model_management.load_models_gpu(models_to_load)  # weights in place before the baseline
        reset_peak_rss()
        baseline = peak_rss_mb()
        host.comfy.sample.sample(model, torch.randn(latent.shape, generator=g), 1, 7.5, "euler", "normal", positive,
                                 negative, latent, disable_pbar=True, seed=0)
    rise = peak_rss_mb() - baseline
    row = {"frames": frames, "context_length": context_length, "baseline_mb": baseline, "sampling_rise_mb": rise,
           "controlnet": controlnet, "sparsectrl": sparsectrl, "host_dir": default_host_dir()}
    if controlnet:
        row["hint_mb"] = hint_mb(frames, size)
        row["rise_minus_hint_mb"] = rise - row["hint_mb"]
    return row


def measure_in_subprocess(frames: int, size: int, context_length: int | None, controlnet: bool = False,
                          sparsectrl: bool = False) -> dict:
    """:func:`measure` in a fresh Python process (peak RSS only grows within a process).
    ``context_length`` None samples all frames in one piece (no context windows); ``controlnet`` applies
    the tiny ControlNet with one hint image per frame."""
    # Every allocation over 64 KiB gets its own mapping, returned to the system when freed, so the
    # peak RSS follows the peak of live memory rather than glibc's heap history.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", str(frames), "--size", str(size),
                          "--context-length", str(context_length or 0)] + (["--controlnet"] if controlnet else [])
                         + (["--sparsectrl"] if sparsectrl else []),
                         capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"memory measurement for {frames} frames failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--size", type=int, default=128, help="image size in pixels (latent = size / 8)")
    ap.add_argument("--context-length", type=int, default=16)
    ap.add_argument("--controlnet", action="store_true",
                    help="apply the tiny ControlNet with one hint image per frame (latent size x 8) before sampling")
    ap.add_argument("--sparsectrl", action="store_true",
                    help="apply the tiny scribble SparseCtrl with keyframes at the first, middle and last frame")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.size, args.context_length or None, args.controlnet,
                                 args.sparsectrl)))
        return
    from tools.comfy_server import default_host_dir
    print(f"host {default_host_dir()}, {args.size}x{args.size}, context length {args.context_length or 'none'}"
          f"{', ControlNet (one hint per frame)' if args.controlnet else ''}"
          f"{', SparseCtrl (3 keyframes)' if args.sparsectrl else ''}", flush=True)
    rows = []
    key = "rise_minus_hint_mb" if args.controlnet else "sampling_rise_mb"
    for frames in args.frames:
        rows.append(measure_in_subprocess(frames, args.size, args.context_length or None, args.controlnet,
                                          args.sparsectrl))
        row = rows[-1]
        extra = (f", hint {row['hint_mb']:6.1f} MB, rise - hint {row['rise_minus_hint_mb']:8.1f} MB"
                 if args.controlnet else "")
        print(f"frames {frames:4d}: peak RSS rise during sampling {row['sampling_rise_mb']:8.1f} MB{extra} "
              f"(baseline {row['baseline_mb']:.0f} MB)", flush=True)
    ratio = rows[-1][key] / max(rows[0][key], 1e-9)
    what = "rise - hint" if args.controlnet else "rise"
    print(f"ratio {args.frames[-1]} / {args.frames[0]} frames ({what}), context {args.context_length}: x{ratio:.2f} "
          f"(target <= 1.2)")


if __name__ == "__main__":
    main()
