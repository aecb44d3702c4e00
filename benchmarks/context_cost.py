"""Context windows: what a produced frame costs when a clip is sampled in windows.

    .venv/bin/python benchmarks/context_cost.py [--frames 64 128] [--size 64] [--steps 4] [--repeats 3]

1. Arithmetic (pure): for each schedule, the frames the UNet evaluates per frame it produces (windows of
   16 sharing 4, averaged over the sampling steps: uniform schedules move their windows every step).
2. Time (the host's own sampler, in-process, the tiny models, CFG 7.5): time per produced frame of each
   schedule at each length, against a 16-frame clip sampled in one piece; divided by the arithmetic
   ratio, what windowing costs beyond recomputing the overlap (slicing, fusing, one UNet call per window).
3. The fuse step alone: ``samplers.run_in_windows`` with a call that returns its input (no model), as a
   share of the windowed sampling time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (ROOT, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

from samplers.context import SCHEDULES, ContextOptions  # noqa: E402
from samplers.windowed import run_in_windows  # noqa: E402

CONTEXT = dict(context_length=16, overlap=4)


def log(*a):
    print(*a, flush=True)


def frames_evaluated_per_frame(schedule: str, frames: int, steps: int) -> float:
    options = ContextOptions(schedule=schedule, **CONTEXT)
    return statistics.mean(sum(len(w) for w in options.windows(frames, step)) for step in range(steps)) / frames


def fuse_seconds(schedule: str, frames: int, size: int, repeats: int) -> float:
    """run_in_windows around a call that returns its input: slicing and fusing alone, a CFG batch of 2."""
    import torch
    options = ContextOptions(schedule=schedule, **CONTEXT)
    x = torch.randn(2 * frames, 4, size // 8, size // 8)
    times = []
    for step in range(repeats):
        start = time.perf_counter()
        run_in_windows(lambda part, index: part, x, 2, options, step)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", nargs="+", type=int, default=[64, 128])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "context_cost.json"))
    args = ap.parse_args()

    import torch
    from run import TINY_CHECKPOINT, TINY_MOTION, setup_host
    from tools.inprocess_host import load_checkpoint
    host = setup_host("cpu", "pytorch")
    loaded = load_checkpoint(host, TINY_CHECKPOINT)
    motion = host.motion_modules.load_motion_model(TINY_MOTION)
    animated = host.host_module.apply_motion_model(loaded.model, motion, 1.0, motion.format.beta_schedule)
    g = torch.Generator().manual_seed(0)
    positive, negative = [[torch.randn(1, 77, 768, generator=g), {}]], [[torch.randn(1, 77, 768, generator=g), {}]]

    def sample_seconds(model, frames):
        latent = torch.zeros(frames, 4, args.size // 8, args.size // 8)
        noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(1))
        start = time.perf_counter()
        with torch.inference_mode():
            host.comfy.sample.sample(model, noise, args.steps, 7.5, "euler", "normal", positive, negative, latent,
                                     seed=1, disable_pbar=True)
        return time.perf_counter() - start

    models = {s: host.host_module.set_context_options(animated, ContextOptions(schedule=s, **CONTEXT))
              for s in SCHEDULES}
    for model in [animated, *models.values()]:
        sample_seconds(model, 32)  # warm-up
    result = {"context": CONTEXT, "size": args.size, "steps": args.steps, "repeats": args.repeats, "rows": []}
    baseline = []
    runs = {(s, f): [] for s in SCHEDULES for f in args.frames}
    for r in range(args.repeats):  # alternating, so that load from other processes hits all alike
        baseline.append(sample_seconds(animated, 16) / 16)
        for (schedule, frames) in runs:
            runs[(schedule, frames)].append(sample_seconds(models[schedule], frames) / frames)
    per_frame_16 = statistics.median(baseline)
    result["one_piece_16_frames_s_per_frame"] = per_frame_16
    log(f"16 frames in one piece: {per_frame_16 * 1e3:.1f} ms per frame ({args.steps} steps, {args.size}x{args.size}, "
        f"tiny models, CFG batch of 2)")
    log(f"{'schedule':18s} {'frames':>6s} {'evaluated/produced':>19s} {'time/frame vs 16':>17s} "
        f"{'beyond recomputation':>21s} {'fuse share':>10s}")
    for (schedule, frames), times in runs.items():
        evaluated = frames_evaluated_per_frame(schedule, frames, args.steps)
        per_frame = statistics.median(times)
        fuse = fuse_seconds(schedule, frames, args.size, max(args.steps, 3)) * args.steps  # one call per step
        row = {"schedule": schedule, "frames": frames, "evaluated_per_produced": evaluated,
               "s_per_frame": per_frame, "time_per_frame_over_one_piece": per_frame / per_frame_16,
               "beyond_recomputation": per_frame / per_frame_16 / evaluated,
               "fuse_share": fuse / (per_frame * frames)}
        result["rows"].append(row)
        log(f"{schedule:18s} {frames:6d} {evaluated:19.3f} {row['time_per_frame_over_one_piece']:17.3f} "
            f"{row['beyond_recomputation']:21.3f} {row['fuse_share']:10.4f}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
