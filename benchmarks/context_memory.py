"""Peak memory of sampling vs frame count, with context windows (ContextScheduler, length 16).

Each frame count runs in a fresh process (peak RSS only grows within a process): load the tiny SD1.5
checkpoint and motion module in-process, sample one step, and report how much the peak resident
memory rose during sampling. With context windows that rise must stay flat: the script prints the
ratio of the largest frame count's rise to the smallest's (target <= 1.2).

    .venv/bin/python benchmarks/context_memory.py [--frames 16 32 64 128] [--size 128]
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


def measure(frames: int, size: int, context_length: int | None) -> dict:
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
    with torch.inference_mode():
        host.comfy.model_management.load_models_gpu([model])  # weights in place before the baseline
        reset_peak_rss()
        baseline = peak_rss_mb()
        host.comfy.sample.sample(model, torch.randn(latent.shape, generator=g), 1, 7.5, "euler", "normal", cond, cond,
                                 latent, disable_pbar=True, seed=0)
    return {"frames": frames, "context_length": context_length, "baseline_mb": baseline,
            "sampling_rise_mb": peak_rss_mb() - baseline}


def measure_in_subprocess(frames: int, size: int, context_length: int | None) -> dict:
    """:func:`measure` in a fresh Python process (peak RSS only grows within a process).
    ``context_length`` None samples all frames in one piece (no context windows)."""
    # Every allocation over 64 KiB gets its own mapping, returned to the system when freed, so the
    # peak RSS follows the peak of live memory rather than glibc's heap history.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", str(frames), "--size", str(size),
                          "--context-length", str(context_length or 0)], capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"memory measurement for {frames} frames failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--size", type=int, default=128, help="image size in pixels (latent = size / 8)")
    ap.add_argument("--context-length", type=int, default=16)
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.size, args.context_length or None)))
        return
    rows = []
    for frames in args.frames:
        rows.append(measure_in_subprocess(frames, args.size, args.context_length or None))
        print(f"frames {frames:4d}: peak RSS rise during sampling {rows[-1]['sampling_rise_mb']:8.1f} MB "
              f"(baseline {rows[-1]['baseline_mb']:.0f} MB)", flush=True)
    ratio = rows[-1]["sampling_rise_mb"] / max(rows[0]["sampling_rise_mb"], 1e-9)
    print(f"ratio {args.frames[-1]} / {args.frames[0]} frames, context {args.context_length}: x{ratio:.2f} "
          f"(target <= 1.2)")


if __name__ == "__main__":
    main()
