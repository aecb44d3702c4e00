"""One motion module (the temporal layer alone), timed and profiled on random weights.

Reports the median wall time of a forward pass, the FLOPs torch counts for it (matmuls and attention),
the achieved GFLOP/s, and, from the profiler, every copy the pass makes (``aten::copy_`` / ``clone`` /
``contiguous``) with the bytes it moves, so the "(b f) c h w <-> (b h w) f c once per module" claim can
be checked. Used by benchmarks/run.py, and on its own:

    .venv/bin/python benchmarks/temporal_layer.py [--channels 320] [--frames 16] [--latent 16] [--clips 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (ROOT, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)


def temporal_at(revision: str):
    """motion_modules/temporal.py as it was at a git revision: the package's files at that revision,
    written to a temporary folder and imported as a package of their own."""
    import importlib
    import re
    import subprocess
    import tempfile
    folder = tempfile.mkdtemp()
    package = "motion_modules_at_" + re.sub(r"\W", "_", revision)
    os.makedirs(os.path.join(folder, package))
    names = subprocess.run(["git", "-C", ROOT, "ls-tree", "--name-only", revision, "motion_modules/"],
                           capture_output=True, text=True, check=True).stdout.split()
    for name in names:
        if name.endswith(".py"):
            source = subprocess.run(["git", "-C", ROOT, "show", f"{revision}:{name}"],
                                    capture_output=True, text=True, check=True).stdout
            with open(os.path.join(folder, package, os.path.basename(name)), "w") as f:
                f.write(source)
    sys.path.insert(0, folder)
    return importlib.import_module(package + ".temporal")


def random_module(channels: int, pe_length: int = 32, dtype=torch.float32, seed: int = 0, temporal=None):
    if temporal is None:
        from motion_modules import temporal
    torch.manual_seed(seed)
    module = temporal.MotionModule(channels, pe_length).to(dtype)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 2:
                p.normal_(0, p.shape[1] ** -0.5)
            else:
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.05)
    return module.eval().requires_grad_(False)


def flops_of(fn) -> int:
    from run import count_flops
    return count_flops(fn)


def time_it(fn, repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def copies_of(fn) -> list[dict]:
    """The layout copies one call makes, from torch.profiler: every ``aten::copy_`` that is not a
    matmul's bias broadcast (addmm starts from a copy of the bias), named by its outermost op."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
    out = []
    for event in prof.events():
        if event.name != "aten::copy_" or not event.input_shapes:
            continue
        chain, parent = [], event.cpu_parent
        while parent is not None:
            chain.append(parent.name)
            parent = parent.cpu_parent
        if any(name in ("aten::addmm", "aten::linear") for name in chain):
            continue
        ops = [name for name in chain if name.startswith("aten::")]
        shape = event.input_shapes[0]
        numel = 1
        for n in shape:
            numel *= n
        out.append({"op": ops[-1] if ops else event.name, "shape": list(shape), "elements": numel})
    return out


def gemm_floor(module, tokens: int, dtype=torch.float32):
    """A call running the module's matrix products alone (every Linear of the module, on a (tokens, in)
    input, through the kernel the module's layers use: motion_modules/kernels.py), nothing else: the
    arithmetic floor the whole module is measured against."""
    from motion_modules.kernels import linear
    linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    inputs = {m.in_features: torch.randn(tokens, m.in_features, dtype=dtype) for m in linears}

    def call():
        for m in linears:
            linear(inputs[m.in_features], m.weight, m.bias)
    return call


def measure(channels=320, frames=16, latent=16, clips=2, repeats=5, dtype=torch.float32, cross_frame=False,
            profile_copies=True, temporal=None) -> dict:
    module = random_module(channels, dtype=dtype, temporal=temporal)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(clips * frames, channels, latent, latent, generator=g).to(dtype)

    def call():
        return module(x, frames, cross_frame)

    floor_call = gemm_floor(module, clips * frames * latent * latent, dtype)
    with torch.inference_mode():
        flops = flops_of(call)
        times, floor_times = [], []
        call(), floor_call()
        for _ in range(repeats):  # alternating, so that load from other processes hits both alike
            times += time_it(call, 1, warmup=0)
            floor_times += time_it(floor_call, 1, warmup=0)
        copies = copies_of(call) if profile_copies else []
    median = statistics.median(times)
    floor = statistics.median(floor_times)
    activation = x.numel()
    return {"channels": channels, "frames": frames, "latent": latent, "clips": clips, "dtype": str(dtype),
            "cross_frame": cross_frame, "threads": torch.get_num_threads(), "median_s": median, "times_s": times,
            "flops": flops, "gflops_per_s": flops / median / 1e9, "gemm_floor_s": floor,
            "over_gemm_floor": statistics.median(t / f for t, f in zip(times, floor_times)),
            "copies": copies, "copied_elements_per_activation": sum(c["elements"] for c in copies) / activation}


def compare(revision: str, rounds: int = 5, **kw) -> dict:
    """This working tree's module against the one at ``revision``, same weights and input, the two
    timed in alternation (one call each per round) so that load from other processes hits both alike."""
    old_temporal = temporal_at(revision)
    channels, frames, latent, clips = (kw.get("channels", 320), kw.get("frames", 16), kw.get("latent", 16),
                                       kw.get("clips", 2))
    cross = kw.get("cross_frame", False)
    new, old = random_module(channels), random_module(channels, temporal=old_temporal)
    old.load_state_dict(new.state_dict())
    x = torch.randn(clips * frames, channels, latent, latent, generator=torch.Generator().manual_seed(1))
    times = {"new": [], "old": []}
    with torch.inference_mode():
        same = (new(x, frames, cross) - old(x, frames, cross)).abs().max().item()
        for _ in range(rounds):
            for name, m in (("old", old), ("new", new)):
                start = time.perf_counter()
                m(x, frames, cross)
                times[name].append(time.perf_counter() - start)
        copies = {"new": len(copies_of(lambda: new(x, frames, cross))),
                  "old": len(copies_of(lambda: old(x, frames, cross)))}
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"revision": revision, "cross_frame": cross, "median_s": med, "times_s": times, "copies": copies,
            "speedup": med["old"] / med["new"], "max_abs_difference": same}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--channels", type=int, default=320)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--latent", type=int, default=16, help="latent height = width")
    ap.add_argument("--clips", type=int, default=2, help="cond/uncond clips in the batch")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cross-frame", action="store_true")
    ap.add_argument("--json", help="write the result here")
    ap.add_argument("--against", metavar="REV", help="also time the module as it was at this git revision")
    args = ap.parse_args()
    if args.against:
        r = compare(args.against, args.repeats, channels=args.channels, frames=args.frames, latent=args.latent,
                    clips=args.clips, cross_frame=args.cross_frame)
        print(f"{args.against}: median {r['median_s']['old'] * 1e3:.1f} ms, {r['copies']['old']} copies; "
              f"working tree: {r['median_s']['new'] * 1e3:.1f} ms, {r['copies']['new']} copies; "
              f"speed-up x{r['speedup']:.3f}; max |difference| {r['max_abs_difference']:.2e}")
        return
    r = measure(args.channels, args.frames, args.latent, args.clips, args.repeats, cross_frame=args.cross_frame)
    print(f"motion module C={r['channels']} frames={r['frames']} latent={r['latent']}x{r['latent']} "
          f"clips={r['clips']} threads={r['threads']}: median {r['median_s'] * 1e3:.1f} ms, "
          f"{r['flops'] / 1e9:.2f} GFLOP, {r['gflops_per_s']:.1f} GFLOP/s; its matrix products alone "
          f"{r['gemm_floor_s'] * 1e3:.1f} ms: module / floor x{r['over_gemm_floor']:.3f}")
    print(f"copies ({len(r['copies'])}), {r['copied_elements_per_activation']:.2f} activation-sizes in total:")
    for c in r["copies"]:
        print(f"  {c['op']:18s} {c['shape']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)


if __name__ == "__main__":
    main()
