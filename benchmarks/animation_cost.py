"""What animating costs on a real ComfyUI server: plain KSampler against ApplyMotionModule + KSampler on
the same full-size weights (random values, generated once), and, where AnimateDiff-Evolved is checked out
locally, its AnimateDiff Loader + KSampler as a third variant, all on one server, runs alternating.

    .venv/bin/python benchmarks/animation_cost.py                                   # SD1.5: v2, v3; 64/128/256 px
    .venv/bin/python benchmarks/animation_cost.py --sizes 64 128 --motion v2 --evolved ~/ComfyUI-AnimateDiff-Evolved
    .venv/bin/python benchmarks/animation_cost.py --family sdxl --sizes 64 --motion sdxl-beta

Each run is one prompt: CheckpointLoaderSimple, CLIPTextEncode (positive, negative), EmptyLatentImage
(16 frames), [the motion model,] KSampler (euler, normal, 3 steps, CFG 7.5), SaveLatent. The seed changes
every round, so KSampler runs every time and nothing else does (the server runs with ``--cache-lru``
where the host has it, so that alternating prompts do not reload each other's motion modules); the time
is the client's, from POST /prompt to the end of execution. After one warm-up run of every variant (model
loading, first calls), the variants run in turn, ``--rounds`` times.

Printed per size: each variant's median time, its ratio over plain, the FLOP ratio of one sampling step
(the animated model's UNet call against the plain one, counted with torch's FlopCounterMode through the
host's own sampler in a separate process: the same network for every pack), and ``time ratio / FLOP
ratio``: 1.00 when the temporal layers cost per FLOP what the UNet around them costs, below 1 when they
are cheaper. With Evolved: our time over Evolved's, median of the per-round ratios.

The weights: a full SD1.5 checkpoint (UNet, CLIP-L, TAESD-sized VAE; the VAE is never run) and the
motion modules of the published layouts (tests/data/manifests), random values from fixed seeds, fp16,
written once into ``.cache/bench_models`` (about 2 GB for SD1.5 and its two modules; SDXL about 7 GB).

AnimateDiff-Evolved is never fetched or committed by this project: check it out yourself (at a commit
that supports your ComfyUI: its ``pyproject.toml`` says ``requires-comfyui``) and pass its folder with
``--evolved``. It is loaded into the benchmark's server only (through the server's
``extra_model_paths.yaml`` ``custom_nodes`` entry), not installed into the host.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (ROOT, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

BENCH_MODELS = os.path.join(ROOT, ".cache", "bench_models")
MANIFESTS = os.path.join(ROOT, "tests", "data", "manifests")
GENERATOR_VERSION = 1
FAMILIES = {
    "sd15": {"checkpoint": "bench_sd15.safetensors", "config": "SD15_CONFIG", "model": "SD15",
             "motion": {"v2": "animatediff_v2_sd15.json", "v3": "animatediff_v3_sd15.json",
                        "v1": "animatediff_v1_sd15.json"},
             "default_motion": ["v2", "v3"]},
    "sdxl": {"checkpoint": "bench_sdxl.safetensors", "config": "SDXL_CONFIG", "model": "SDXL",
             "motion": {"sdxl-beta": "animatediff_sdxl_v10_beta.json"}, "default_motion": ["sdxl-beta"]},
}


from run import DTYPE_FLAGS  # noqa: E402


def log(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------------------------------------
# Weights

def motion_file(family: str, motion: str) -> str:
    return f"bench_mm_{family}_{motion}.safetensors"


def _stamp_ok(path: str) -> bool:
    try:
        with open(path + ".stamp") as f:
            return f.read().strip() == str(GENERATOR_VERSION)
    except OSError:
        return False


def _save(tensors: dict, path: str):
    from safetensors.torch import save_file
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = path + ".partial"
    save_file(tensors, partial, metadata={"generator": f"benchmarks/animation_cost.py v{GENERATOR_VERSION}"})
    os.replace(partial, path)
    with open(path + ".stamp", "w") as f:
        f.write(str(GENERATOR_VERSION))


def checkpoint_shapes(family: str) -> dict:
    """Key -> shape of a full checkpoint as the host saves one: its UNet, its text encoders (the host's
    own key conversion for saving), and a TAESD-sized VAE."""
    import torch
    from tools import make_tiny_models as tiny
    from tools.comfy_server import default_host_dir
    UNetModel, _, TAESD = tiny.import_host(default_host_dir())
    import comfy.supported_models
    config = getattr(tiny, FAMILIES[family]["config"])
    model_config = getattr(comfy.supported_models, FAMILIES[family]["model"])(dict(config))
    with torch.no_grad(), torch.device("meta"):
        unet = UNetModel(**config, device="meta")
        clip = model_config.clip_target().clip(device="meta")
        vae = TAESD()
    shapes = {"model.diffusion_model." + k: tuple(v.shape) for k, v in unet.state_dict().items()}
    clip_sd = {k: v for k, v in clip.state_dict().items() if not k.endswith("position_ids")}
    for k, v in model_config.process_clip_state_dict_for_saving(clip_sd).items():
        shapes[k] = tuple(v.shape)
    shapes.update({"first_stage_model." + k: tuple(v.shape) for k, v in vae.state_dict().items()})
    return shapes


def write_models(folder: str, family: str, motions: list[str]):
    """The checkpoint and motion modules, written once (a stamp file records the generator version)."""
    import torch
    from load_time import random_v2_tensors
    from tools.make_tiny_models import seeded_value
    spec = FAMILIES[family]
    ckpt = os.path.join(folder, "checkpoints", spec["checkpoint"])
    if not _stamp_ok(ckpt):
        log(f"writing {ckpt} (random weights, once) ...")
        tensors = {}
        for key, shape in sorted(checkpoint_shapes(family).items()):
            value = seeded_value(key, shape, 7)
            if key.endswith("logit_scale"):
                value = torch.tensor(4.6052)
            tensors[key] = value.to(torch.float16)
        _save(tensors, ckpt)
        del tensors
    for motion in motions:
        path = os.path.join(folder, "animatediff_models", motion_file(family, motion))
        if not _stamp_ok(path):
            log(f"writing {path} (random weights, once) ...")
            tensors = random_v2_tensors(os.path.join(MANIFESTS, spec["motion"][motion]), seed=3)
            _save({k: v.half() for k, v in tensors.items()}, path)


# ---------------------------------------------------------------------------------------------
# FLOPs (in a child process: the host in-process, the same checkpoint and modules)

def count_flops_here(folder: str, family: str, motions: list[str], size: int, frames: int, attention: str,
                     device: str) -> dict:
    """FLOPs of one sampling step (one UNet call on the CFG batch) of the plain and each animated model."""
    import torch
    from run import count_flops, setup_host
    from tools.inprocess_host import load_checkpoint
    host = setup_host(device, attention)
    spec = FAMILIES[family]
    loaded = load_checkpoint(host, os.path.join(folder, "checkpoints", spec["checkpoint"]))
    g = torch.Generator().manual_seed(0)
    context = 2048 if family == "sdxl" else 768
    extra = {"pooled_output": torch.randn(1, 1280, generator=g)} if family == "sdxl" else {}
    positive = [[torch.randn(1, 77, context, generator=g), dict(extra)]]
    negative = [[torch.randn(1, 77, context, generator=g), dict(extra)]]
    latent = torch.zeros(frames, 4, size // 8, size // 8)
    noise = torch.randn(latent.shape, generator=g)

    def one_step(model):
        def run():
            with torch.inference_mode():
                host.comfy.sample.sample(model, noise, 1, 7.5, "euler", "normal", positive, negative, latent,
                                         seed=1, disable_pbar=True)
        return run

    out = {"plain": count_flops(one_step(loaded.model))}
    for motion in motions:
        mm = host.motion_modules.load_motion_model(
            os.path.join(folder, "animatediff_models", motion_file(family, motion)))
        animated = host.host_module.apply_motion_model(loaded.model, mm, 1.0, mm.format.beta_schedule)
        out[motion] = count_flops(one_step(animated))
    return out


def flops_in_child(folder, family, motions, size, frames, attention, device) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--count-flops", "--family", family, "--models-dir", folder,
           "--sizes", str(size), "--frames", str(frames), "--attention", attention, "--device", device,
           "--motion", *motions]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"FLOP count failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# Prompts

def prompt_for(variant: str, family: str, size: int, frames: int, steps: int, seed: int) -> dict:
    """API-format prompt of one variant: "plain", "ours <motion>" or "evolved <motion>"."""
    spec = FAMILIES[family]
    p = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": spec["checkpoint"]}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a paper boat on a river", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": frames}},
        "7": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": seed, "steps": steps, "cfg": 7.5,
                                                   "sampler_name": "euler", "scheduler": "normal",
                                                   "positive": ["2", 0], "negative": ["3", 0],
                                                   "latent_image": ["4", 0], "denoise": 1.0}},
        "8": {"class_type": "SaveLatent", "inputs": {"samples": ["7", 0], "filename_prefix": "bench/latent"}},
    }
    if variant == "plain":
        return p
    pack, motion = variant.split(" ", 1)
    name = motion_file(family, motion)
    if pack == "ours":
        p["5"] = {"class_type": "LoadMotionModule", "inputs": {"model_name": name}}
        p["6"] = {"class_type": "ApplyMotionModule", "inputs": {"model": ["1", 0], "motion_model": ["5", 0],
                                                                "motion_scale": 1.0, "beta_schedule": "autoselect"}}
    else:
        p["6"] = {"class_type": "ADE_AnimateDiffLoaderGen1", "inputs": {"model": ["1", 0], "model_name": name,
                                                                        "beta_schedule": "autoselect"}}
    p["7"]["inputs"]["model"] = ["6", 0]
    return p


def start_server(workdir: str, folder: str, evolved: str | None, attention: str, device: str, dtype: str):
    from tools.comfy_server import ComfyServer, default_host_dir, host_has_flag
    extra = ["--use-pytorch-cross-attention"] if attention == "pytorch" else []
    if dtype != "auto":
        extra.append("--" + DTYPE_FLAGS[dtype].replace("_", "-"))
    if host_has_flag(default_host_dir(), "--cache-lru"):
        # The default cache keeps only the last prompt's node outputs: alternating prompts would then load
        # and cast each motion module again in every run (both packs), which is not sampling cost.
        extra += ["--cache-lru", "64"]
    else:
        log("note: this ComfyUI has no --cache-lru: every animated run includes loading its motion module")
    if evolved:
        nodes_dir = os.path.join(workdir, "extra_custom_nodes")
        os.makedirs(nodes_dir, exist_ok=True)
        os.symlink(os.path.abspath(evolved), os.path.join(nodes_dir, os.path.basename(os.path.abspath(evolved))))
        yaml_path = os.path.join(workdir, "evolved_paths.yaml")
        with open(yaml_path, "w") as f:
            f.write(f"benchmark_extra_nodes:\n    custom_nodes: {nodes_dir}\n")
        extra += ["--extra-model-paths-config", yaml_path]
    server = ComfyServer(workdir, models_dir=folder, extra_args=extra, cpu=device == "cpu").start(timeout=300)
    if evolved and "ADE_AnimateDiffLoaderGen1" not in server.object_info:
        tail = server.log_tail(80)
        server.stop()
        raise RuntimeError(f"AnimateDiff-Evolved did not load from {evolved} (check that its commit supports this "
                           f"ComfyUI):\n{tail}")
    return server


# ---------------------------------------------------------------------------------------------
# The run

def measure_size(server, variants, family, size, args) -> dict:
    times = {v: [] for v in variants}

    def run(variant, seed):
        start = time.perf_counter()
        server.run(prompt_for(variant, family, size, args.frames, args.steps, seed), timeout=7200)
        return time.perf_counter() - start

    log(f"{size}x{size}: warm-up ...")
    for v in variants:
        log(f"  {v}: {run(v, 0):.2f} s")
    loads = []
    for r in range(args.rounds):
        loads.append(os.getloadavg()[0])
        for v in variants:
            times[v].append(run(v, r + 1))
        log(f"  round {r + 1}/{args.rounds} (load {loads[-1]:.1f}): " +
            ", ".join(f"{v} {t[-1]:.2f} s" for v, t in times.items()))
    return {"times_s": times, "median_s": {v: statistics.median(t) for v, t in times.items()},
            "load_average_per_round": loads}


def summarise(result: dict, flops: dict, variants: list[str]) -> dict:
    med, times = result["median_s"], result["times_s"]
    rows = {}
    for v in variants[1:]:
        pack, motion = v.split(" ", 1)
        flop_ratio = flops[motion] / flops["plain"]
        ratio = med[v] / med["plain"]
        paired = statistics.median(a / b for a, b in zip(times[v], times["plain"]))
        rows[v] = {"time_ratio": ratio, "time_ratio_paired": paired, "flop_ratio": flop_ratio,
                   "time_over_flop": ratio / flop_ratio}
        if pack == "ours" and f"evolved {motion}" in times:
            rows[v]["ours_over_evolved_paired"] = statistics.median(
                a / b for a, b in zip(times[v], times[f"evolved {motion}"]))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", choices=sorted(FAMILIES), default="sd15")
    ap.add_argument("--motion", nargs="+", help="motion-module layouts (sd15: v1 v2 v3; sdxl: sdxl-beta)")
    ap.add_argument("--sizes", nargs="+", type=int, default=[64, 128, 256], help="image side in pixels")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--evolved", help="a local checkout of ComfyUI-AnimateDiff-Evolved to compare with")
    ap.add_argument("--attention", choices=["host-default", "pytorch"], default="host-default",
                    help="the server's spatial attention: its own choice (sub-quadratic on a CPU) or torch SDPA")
    ap.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                    help="the server's device: --cpu, or the host's own choice (a GPU where there is one)")
    ap.add_argument("--dtype", choices=["auto", *DTYPE_FLAGS], default="auto",
                    help="the UNet's dtype: the host's choice, or its --fp16-unet, --bf16-unet, --force-fp32")
    ap.add_argument("--compile", action="store_true",
                    help="the server runs the motion modules through torch.compile (ANIMATEDIFF_TORCH_COMPILE=1)")
    ap.add_argument("--models-dir", default=BENCH_MODELS)
    ap.add_argument("--name", default=None, help="result file name (default animation_cost_<family>)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--count-flops", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    motions = args.motion or FAMILIES[args.family]["default_motion"]
    unknown = [m for m in motions if m not in FAMILIES[args.family]["motion"]]
    if unknown:
        ap.error(f"--motion {unknown}: {args.family} has {sorted(FAMILIES[args.family]['motion'])}")
    if args.count_flops:
        print(json.dumps(count_flops_here(args.models_dir, args.family, motions, args.sizes[0], args.frames,
                                          args.attention, "cuda" if args.device == "gpu" else "cpu")))
        return
    if args.evolved and not os.path.isfile(os.path.join(args.evolved, "__init__.py")):
        ap.error(f"--evolved {args.evolved}: not a ComfyUI-AnimateDiff-Evolved checkout (no __init__.py)")
    if args.compile:
        os.environ["ANIMATEDIFF_TORCH_COMPILE"] = "1"  # the server inherits it
    write_models(args.models_dir, args.family, motions)
    variants = ["plain"] + [f"ours {m}" for m in motions] + ([f"evolved {m}" for m in motions] if args.evolved else [])
    flops = {}
    for size in args.sizes:
        log(f"counting FLOPs at {size}x{size} ...")
        flops[size] = flops_in_child(args.models_dir, args.family, motions, size, args.frames, args.attention,
                                     args.device)
    import torch
    out = {"family": args.family, "motions": motions, "frames": args.frames, "steps": args.steps,
           "rounds": args.rounds, "attention": args.attention, "device": args.device, "dtype": args.dtype,
           "compile": args.compile,
           "evolved": args.evolved,
           "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                       "torch": torch.__version__}, "sizes": {}}
    if args.evolved:
        done = subprocess.run(["git", "-C", args.evolved, "rev-parse", "HEAD"], capture_output=True, text=True)
        out["evolved_commit"] = done.stdout.strip() or None
    with tempfile.TemporaryDirectory() as workdir:
        server = start_server(workdir, args.models_dir, args.evolved, args.attention, args.device, args.dtype)
        try:
            for size in args.sizes:
                result = measure_size(server, variants, args.family, size, args)
                result["flops_per_step"] = flops[size]
                result["summary"] = summarise(result, flops[size], variants)
                out["sizes"][str(size)] = result
        finally:
            server.stop()
    log("")
    log(f"{args.family}, {args.frames} frames, {args.steps} euler steps, CFG 7.5, {args.rounds} rounds, "
        f"{os.cpu_count()} cores, torch {torch.__version__}")
    for size, result in out["sizes"].items():
        log(f"{size}x{size}: plain {result['median_s']['plain']:.2f} s")
        for v, row in result["summary"].items():
            line = (f"  {v:18s} {result['median_s'][v]:7.2f} s  x{row['time_ratio']:.3f} over plain "
                    f"(paired x{row['time_ratio_paired']:.3f}); FLOPs x{row['flop_ratio']:.3f}; "
                    f"time/FLOP {row['time_over_flop']:.3f}")
            if "ours_over_evolved_paired" in row:
                line += f"; ours / Evolved x{row['ours_over_evolved_paired']:.3f}"
            log(line)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{args.name or 'animation_cost_' + args.family}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
