"""Load time of a motion-module file at real SD1.5 v2 size (random values, the v2 manifest's keys and
shapes): an fp16 ``.safetensors`` (~0.9 GB) and an fp32 ``.ckpt`` (~1.8 GB), written into a temporary
folder that is deleted afterwards. Each load runs in a fresh process and reports

* ``load_s``: ``load_motion_model`` (read, recognise, build the modules), after a warm-up on a small
  module so that torch's one-time lazy imports are not counted;
* ``ready_s``: that plus the module set for fp32 compute, every weight page touched (a memory-mapped
  ``.ckpt`` is only read from disk then; an fp16 file gets its one fp32 copy);
* ``peak_rss_mb``: the process's peak resident memory rise.

The files were just written, so they are read from the page cache (warm): that is the load cost without
the disk, which a benchmark on a shared machine cannot control.

    .venv/bin/python benchmarks/load_time.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = os.path.join(ROOT, "tests", "data", "manifests", "animatediff_v2_sd15.json")


def random_v2_tensors(manifest: str = MANIFEST, seed: int = 0) -> dict:
    """fp32 tensors with the manifest's keys and shapes: weights ~ N(0, 1/fan_in), norms around 1,
    biases small, the positional encodings the real sinusoidal table."""
    import torch
    sys.path.insert(0, ROOT)
    from motion_modules.temporal import sinusoidal_table
    with open(manifest) as f:
        shapes = json.load(f)
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in shapes.items():
        if key.endswith("pos_encoder.pe"):
            out[key] = sinusoidal_table(shape[1], shape[2])
        elif len(shape) == 1:
            is_norm_scale = key.endswith("weight")  # 1-D weights are the GroupNorm / LayerNorm scales
            out[key] = float(is_norm_scale) + 0.02 * torch.randn(shape, generator=g)
        else:
            out[key] = torch.randn(shape, generator=g) * shape[1] ** -0.5
    return out


def write_files(folder: str) -> dict:
    import torch
    from safetensors.torch import save_file
    tensors = random_v2_tensors()
    paths = {"fp16 .safetensors": os.path.join(folder, "mm_sd_v15_v2_random.safetensors"),
             "fp32 .ckpt": os.path.join(folder, "mm_sd_v15_v2_random.ckpt")}
    save_file({k: v.half() for k, v in tensors.items()}, paths["fp16 .safetensors"])
    torch.save(tensors, paths["fp32 .ckpt"])
    return paths


def child(path: str) -> dict:
    import torch
    sys.path.insert(0, ROOT)
    from motion_modules import load_motion_model
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from context_memory import peak_rss_mb
    # One small module first: the imports torch makes lazily on first use (meta device, ...) are a
    # one-time cost of the process (ComfyUI has long paid it), not of the file.
    from motion_modules import motion_model_from_tensors
    from tools.make_tiny_models import motion_module_tensors
    motion_model_from_tensors(motion_module_tensors([[64]], None, [[64, 64]], pe_length=32), "warm-up.safetensors")
    base = peak_rss_mb()
    start = time.perf_counter()
    motion = load_motion_model(path)
    loaded = time.perf_counter()
    modules = motion.modules_in(torch.float32)
    with torch.inference_mode():
        touched = sum(float(p.view(-1)[::1024].sum()) for p in modules.parameters())  # one read per 4 KiB page
    ready = time.perf_counter()
    return {"file": os.path.basename(path), "bytes": os.path.getsize(path), "format": motion.format.name,
            "dtype": str(motion.format.dtype), "load_s": loaded - start, "ready_s": ready - start,
            "peak_rss_mb": peak_rss_mb() - base, "check": touched}


def measure(repeats: int = 3, folder: str | None = None, log=print) -> list[dict]:
    """Write both files, load each ``repeats`` times (fresh process each), delete them; one row per file
    with the median times."""
    folder = folder or tempfile.mkdtemp(prefix="mm-load-")
    rows = []
    try:
        log(f"writing random SD1.5 v2 motion modules into {folder} ...")
        paths = write_files(folder)
        for label, path in paths.items():
            runs = []
            for _ in range(repeats):
                out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", path],
                                     capture_output=True, text=True)
                if out.returncode:
                    raise RuntimeError(f"loading {path} failed:\n{out.stderr[-3000:]}")
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            row = dict(runs[0], label=label, load_s=statistics.median(r["load_s"] for r in runs),
                       ready_s=statistics.median(r["ready_s"] for r in runs),
                       peak_rss_mb=statistics.median(r["peak_rss_mb"] for r in runs),
                       runs=[{k: r[k] for k in ("load_s", "ready_s", "peak_rss_mb")} for r in runs])
            rows.append(row)
            log(f"{label:18s} {row['bytes'] / 1e9:5.2f} GB: load {row['load_s']:6.2f} s, ready for fp32 "
                f"{row['ready_s']:6.2f} s, peak RSS +{row['peak_rss_mb']:.0f} MB (median of {repeats})")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    measure(args.repeats)


if __name__ == "__main__":
    main()
