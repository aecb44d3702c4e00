"""Performance report: animation overhead against the arithmetic, a peer comparison with diffusers,
memory against frame count, and motion-module load time, in one run.

    .venv/bin/python benchmarks/run.py           # quick: the tiny models, a few minutes on a CPU
    .venv/bin/python benchmarks/run.py --full    # SD1.5 shapes (random weights), 512x512, 16 frames: a GPU run

Prints the ratios and writes ``<out>/<mode>.json`` and ``<out>/<mode>.png`` (default out: benchmarks/results).

1. Animation overhead: ApplyMotionModule + the host's own sampler on F frames, against the host's plain
   sampling of F independent images on the same checkpoint (same sampler, steps, CFG). Beside the time
   ratio, the FLOP ratio of the two models' UNet calls (torch.utils.flop_counter, with the CPU's fused
   attention kernel counted too), so that ``time overhead / FLOP overhead`` says how close the temporal
   layers run to the speed of the UNet around them (target <= 1.05).
2. Peer: the same weights in diffusers' AnimateDiffPipeline (spatial weights converted by diffusers'
   convert_ldm_unet_checkpoint, motion weights by its convert_animatediff_checkpoint_to_diffusers into a
   MotionAdapter), same frames, size, steps, guidance, dtype, threads and attention kernel (SDPA), both
   given text embeddings and returning latents, both with one UNet call per step on a CFG batch of 2
   (counted). Our wall time / diffusers' (target <= 0.9).
3. Memory: peak RSS rise while sampling vs frame count, with and without context windows
   (benchmarks/context_memory.py, one fresh process per point).
4. Load time of a motion-module file at real SD1.5 v2 size, fp16 .safetensors and fp32 .ckpt
   (benchmarks/load_time.py; files written to a temporary folder and deleted).

The runs of the compared pipelines alternate (plain, ours, diffusers, plain, ours, ...) after a warm-up
run each, so that load from other processes on a shared machine hits them alike; medians are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (ROOT, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

MODELS = os.path.join(ROOT, ".cache", "models")
TINY_CHECKPOINT = os.path.join(MODELS, "checkpoints", "tiny_sd15.safetensors")
TINY_MOTION = os.path.join(MODELS, "animatediff_models", "tiny_mm_v2.safetensors")
LDM_PREFIX = "model.diffusion_model."

from tools.make_tiny_models import SD15_CONFIG as SD15_UNET  # noqa: E402  (the real SD1.5 UNet)

QUICK = dict(frames=16, size=64, steps=4, repeats=5, memory_size=128, memory_frames=[8, 16, 32, 64],
             load_repeats=2)
FULL = dict(frames=16, size=512, steps=20, repeats=3, memory_size=256, memory_frames=[16, 32, 64],
            load_repeats=3)
TARGETS = {"time_over_flop_overhead": 1.05, "ours_over_diffusers": 0.9}


def log(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------------------------------------
# Host

DTYPE_FLAGS = {"fp16": "fp16_unet", "bf16": "bf16_unet", "fp32": "force_fp32"}  # the host's own switches


def setup_host(device: str, attention: str, dtype: str = "auto"):
    """The host in-process, as tools.inprocess_host loads it, with its attention kernel chosen:
    ``pytorch`` = torch SDPA (--use-pytorch-cross-attention: the host's default on NVIDIA GPUs, and what
    diffusers uses), ``host-default`` = what the host picks by itself (sub-quadratic attention on a CPU)."""
    from tools.comfy_server import default_host_dir
    from tools.inprocess_host import load_host
    host_dir = default_host_dir()
    if host_dir not in sys.path:
        sys.path.insert(0, host_dir)
    import comfy.options
    if hasattr(comfy.options, "enable_args_parsing"):
        comfy.options.enable_args_parsing(False)
    import comfy.cli_args
    args = comfy.cli_args.args
    args.use_pytorch_cross_attention = attention == "pytorch"
    if dtype != "auto":
        # the host's --fp16-unet / --bf16-unet / --force-fp32 (default: the host's choice: fp16 on NVIDIA, fp32 on a CPU)
        setattr(args, DTYPE_FLAGS[dtype], True)
    if device != "cpu":
        # load_host sets --cpu before it imports model_management; importing it first keeps the GPU.
        args.cpu = False
        import comfy.model_management  # noqa: F401
    return load_host(host_dir, {"checkpoints": os.path.join(MODELS, "checkpoints"),
                                "animatediff_models": os.path.join(MODELS, "animatediff_models")})


def host_unet(host, unet_sd: dict):
    """A ModelPatcher for an LDM-format UNet state dict, loaded the way the host's UNETLoader does."""
    import comfy.sd
    loader = getattr(comfy.sd, "load_diffusion_model_state_dict", None) or comfy.sd.load_unet_state_dict
    model = loader(dict(unet_sd))
    if model is None:
        raise RuntimeError("the host did not recognise the UNet")
    return model


# ---------------------------------------------------------------------------------------------
# Models

def random_tensors(shapes: dict, seed: int) -> dict:
    import torch
    from tools.make_tiny_models import seeded_value
    return {k: seeded_value(k, s, seed).to(torch.float32) for k, s in shapes.items()}


def load_models(full: bool, log=log) -> dict:
    """LDM UNet state dict, its config and the motion module's tensors (AnimateDiff keys), fp32."""
    import torch
    from safetensors.torch import load_file
    from tools.make_tiny_models import TINY_UNET
    if not full:
        ckpt = load_file(TINY_CHECKPOINT)
        unet_sd = {k[len(LDM_PREFIX):]: v.float() for k, v in ckpt.items() if k.startswith(LDM_PREFIX)}
        motion = {k: v.float() for k, v in load_file(TINY_MOTION).items()}
        return {"unet_config": dict(TINY_UNET), "unet_sd": unet_sd, "motion_tensors": motion,
                "motion_path": TINY_MOTION, "name": "tiny SD1.5-detectable UNet (tools/make_tiny_models.py) + tiny_mm_v2"}
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    from load_time import random_v2_tensors
    log("building random SD1.5 UNet and v2 motion module weights ...")
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in UNetModel(**SD15_UNET, device="meta").state_dict().items()}
    return {"unet_config": dict(SD15_UNET), "unet_sd": random_tensors(shapes, 11), "motion_tensors": random_v2_tensors(),
            "motion_path": None, "name": "SD1.5 UNet + AnimateDiff v2 motion module, random weights"}


def diffusers_unet_config(ldm: dict) -> dict:
    """UNet2DConditionModel config matching an LDM SD-style UNet config."""
    mult, res = ldm["channel_mult"], ldm["num_res_blocks"]
    blocks = [ldm["model_channels"] * m for m in mult]
    depth = ldm["transformer_depth"]
    attn = [bool(depth[level * res[level]]) for level in range(len(mult))]
    return dict(sample_size=64, in_channels=ldm["in_channels"], out_channels=ldm["out_channels"],
                block_out_channels=tuple(blocks), layers_per_block=res[0],
                down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn),
                up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
                cross_attention_dim=ldm["context_dim"], attention_head_dim=ldm["num_heads"],
                use_linear_projection=ldm["use_linear_in_transformer"])


def diffusers_unet(models: dict):
    """UNet2DConditionModel holding the LDM UNet's weights, converted by diffusers' own converter."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint
    unet = UNet2DConditionModel(**diffusers_unet_config(models["unet_config"]))
    converted = convert_ldm_unet_checkpoint({LDM_PREFIX + k: v for k, v in models["unet_sd"].items()}, dict(unet.config))
    # assign: the converted tensors become the weights (no second copy of a 3.4 GB fp32 SD1.5 UNet)
    missing, unexpected = unet.load_state_dict(converted, strict=False, assign=True)
    if missing or unexpected:
        raise RuntimeError(f"UNet conversion: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return unet.eval().requires_grad_(False)


def diffusers_adapter(models: dict):
    """MotionAdapter holding the motion module's weights, renamed by diffusers' own converter (the
    renames of docs/motion-module-formats.md §3.8; pos_embed.pe is computed by diffusers: the same
    sinusoidal table)."""
    from diffusers import MotionAdapter
    from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers
    motion = convert_animatediff_checkpoint_to_diffusers(models["motion_tensors"])
    mid = any(k.startswith("mid_block.") for k in motion)
    per_level = 1 + max(int(k.split(".")[3]) for k in motion if k.startswith("down_blocks."))
    blocks = diffusers_unet_config(models["unet_config"])["block_out_channels"]
    adapter = MotionAdapter(block_out_channels=blocks, motion_layers_per_block=per_level, use_motion_mid_block=mid,
                            motion_max_seq_length=32)
    missing, unexpected = adapter.load_state_dict(motion, strict=False, assign=True)
    if [k for k in missing if not k.endswith("pos_embed.pe")] or unexpected:
        raise RuntimeError(f"motion conversion: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return adapter.eval().requires_grad_(False)


def build_diffusers(models: dict, dtype, device):
    """AnimateDiffPipeline holding the same weights."""
    from diffusers import AnimateDiffPipeline, AutoencoderKL, EulerDiscreteScheduler
    # The VAE is never run (latents out); it only gives the pipeline its 8x latent scale factor.
    vae = AutoencoderKL(block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, norm_num_groups=4)
    scheduler = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    pipe = AnimateDiffPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=diffusers_unet(models),
                               motion_adapter=diffusers_adapter(models), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    pipe.unet.to(dtype=dtype).eval().requires_grad_(False)
    return pipe


# ---------------------------------------------------------------------------------------------
# Runs

class CallLog:
    """Batch sizes of a UNet's calls (forward pre-hook)."""

    def __init__(self, module, batch_of=lambda x: x.shape[0]):
        self.sizes = []
        self.handle = module.register_forward_pre_hook(lambda m, a, kw: self.sizes.append(batch_of(a[0] if a else kw["sample"])),
                                                       with_kwargs=True)

    def take(self):
        sizes, self.sizes = self.sizes, []
        return sizes


def flop_mapping():
    """Kernels FlopCounterMode does not know, counted as the ops they stand for: the CPU's fused
    attention as the other SDPA kernels, oneDNN's inner product (motion_modules/kernels.py) as a matmul."""
    import torch
    from torch.utils.flop_counter import sdpa_flop_count
    mapping = {}
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None:
        def cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
            return sdpa_flop_count(query_shape, key_shape, value_shape)
        mapping[op] = cpu_sdpa_flop
    try:
        linear = torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        linear = None
    if linear is not None:
        def inner_product_flop(x_shape, w_shape, *args, out_shape=None, **kwargs):
            rows = 1
            for n in x_shape[:-1]:
                rows *= n
            return 2 * rows * w_shape[0] * w_shape[1]
        mapping[linear] = inner_product_flop
    return mapping


def count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False, custom_mapping=flop_mapping()) as counter:
        fn()
    return counter.get_total_flops()


def make_runners(host, models, args, device, log=log):
    import torch
    base = host_unet(host, models["unet_sd"])
    motion = host.motion_modules.motion_model_from_tensors(dict(models["motion_tensors"]),
                                                           source=models["motion_path"] or "random_v2.safetensors")
    animated = host.host_module.apply_motion_model(base, motion, 1.0, motion.format.beta_schedule)
    dtype = host.host_module.compute_dtype(animated)
    g = torch.Generator().manual_seed(0)
    context = models["unet_config"]["context_dim"]
    positive, negative = torch.randn(1, 77, context, generator=g), torch.randn(1, 77, context, generator=g)
    latent_size = args.size // 8
    latent = torch.zeros(args.frames, 4, latent_size, latent_size)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(1))

    def host_run(model, steps=args.steps):
        def run():
            with torch.inference_mode():
                out = host.comfy.sample.sample(model, noise, steps, args.cfg, "euler", "normal",
                                               [[positive, {}]], [[negative, {}]], latent, seed=1, disable_pbar=True)
            return out
        return run

    runners = {"plain": host_run(base), "ours": host_run(animated)}
    flops = {}
    host_calls = CallLog(base.model.diffusion_model)
    flops["plain"] = count_flops(host_run(base, 1))
    flops["ours"] = count_flops(host_run(animated, 1))
    host_calls.take()
    pipe = None
    if not args.skip_diffusers:
        log("building the diffusers AnimateDiffPipeline from the same weights ...")
        pipe = build_diffusers(models, dtype, device)
        gen = torch.Generator(device="cpu")

        def diffusers_run(steps=args.steps):
            def run():
                gen.manual_seed(1)
                with torch.inference_mode():
                    return pipe(prompt_embeds=positive.to(device, dtype), negative_prompt_embeds=negative.to(device, dtype),
                                num_frames=args.frames, height=args.size, width=args.size, num_inference_steps=steps,
                                guidance_scale=args.cfg, output_type="latent", generator=gen).frames
            return run
        runners["diffusers"] = diffusers_run()
        flops["diffusers"] = count_flops(diffusers_run(1))
        diffusers_calls = CallLog(pipe.unet, batch_of=lambda x: tuple(x.shape[:2]))
    models.pop("unet_sd")  # the host and diffusers hold their weights now
    calls = {}

    def timed(name):
        """(wall seconds, this process's CPU seconds) of one run."""
        fn = runners[name]
        if device != "cpu":
            torch.cuda.synchronize()
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        if device != "cpu":
            torch.cuda.synchronize()
        return time.perf_counter() - start, time.process_time() - cpu

    log("warm-up runs ...")
    for name in runners:
        timed(name)
        calls[name] = (diffusers_calls if name == "diffusers" else host_calls).take()
    return runners, timed, flops, calls, {"dtype": str(dtype), "motion_format": motion.format.name}


def speed(host, models, args, device, log=log) -> dict:
    runners, timed, flops, calls, info = make_runners(host, models, args, device, log)
    times = {name: [] for name in runners}
    cpu_times = {name: [] for name in runners}
    loads = []
    for r in range(args.repeats):
        loads.append(os.getloadavg()[0] if hasattr(os, "getloadavg") else None)
        for name in runners:
            wall, cpu = timed(name)
            times[name].append(wall)
            cpu_times[name].append(cpu)
        log(f"round {r + 1}/{args.repeats} (load average {loads[-1]}): " +
            ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()))
    med = {n: statistics.median(t) for n, t in times.items()}
    out = {"times_s": times, "median_s": med, "min_s": {n: min(t) for n, t in times.items()},
           "cpu_s": cpu_times, "median_cpu_s": {n: statistics.median(t) for n, t in cpu_times.items()},
           "load_average_per_round": loads, "flops_per_step": flops, "unet_calls_warmup": calls, **info}
    def paired(a, b):
        """Median over rounds of a's time / b's time in the same round (runs seconds apart, so slow
        drifts of the machine's load cancel)."""
        return statistics.median(x / y for x, y in zip(times[a], times[b]))

    out["time_overhead"] = med["ours"] / med["plain"]
    out["flop_overhead"] = flops["ours"] / flops["plain"]
    out["time_over_flop_overhead"] = out["time_overhead"] / out["flop_overhead"]
    out["time_over_flop_overhead_paired"] = paired("ours", "plain") / out["flop_overhead"]
    out["time_over_flop_overhead_by_min"] = out["min_s"]["ours"] / out["min_s"]["plain"] / out["flop_overhead"]
    if "diffusers" in med:
        out["ours_over_diffusers"] = med["ours"] / med["diffusers"]
        out["ours_over_diffusers_paired"] = paired("ours", "diffusers")
        out["ours_over_diffusers_by_min"] = out["min_s"]["ours"] / out["min_s"]["diffusers"]
        out["ours_over_diffusers_cpu"] = out["median_cpu_s"]["ours"] / out["median_cpu_s"]["diffusers"]
        out["diffusers_flops_over_ours"] = flops["diffusers"] / flops["ours"]
    return out


def memory(frames_list, size, log=log) -> dict:
    from context_memory import measure_in_subprocess
    rows = {"with context windows (16)": [], "without context windows": []}
    for frames in frames_list:
        for label, length in (("with context windows (16)", 16), ("without context windows", None)):
            if length is None and frames > 32:
                continue  # over the v2 module's 32-frame limit: only windows can do it
            row = measure_in_subprocess(frames, size, length)
            rows[label].append(row)
            log(f"memory, {frames:4d} frames {label:26s}: peak RSS rise {row['sampling_rise_mb']:8.1f} MB")
    return {"size": size, "rows": rows}


# ---------------------------------------------------------------------------------------------
# Report

def plot(result: dict, path: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    fig.suptitle(f"AnimateDiff pack performance ({result['mode']}: {result['settings']['frames']} frames, "
                 f"{result['settings']['size']}px, {result['settings']['steps']} steps, {result['machine']['device']})")
    sp = result.get("speed")
    ax = axes[0][0]
    if sp:
        names = list(sp["median_s"])
        labels = {"plain": "host, F images", "ours": "ours, animation", "diffusers": "diffusers, animation"}
        ax.bar([labels[n] for n in names], [sp["median_s"][n] for n in names], color=["#999", "#2a7", "#37c"][:len(names)])
        for i, n in enumerate(names):
            ax.text(i, sp["median_s"][n], f"{sp['median_s'][n]:.2f} s", ha="center", va="bottom")
        ax.set_ylabel("wall time (median)")
        ax.set_title("sampling time")
        ax = axes[0][1]
        ratios = {"time overhead": sp["time_overhead"], "FLOP overhead": sp["flop_overhead"],
                  "time / FLOP overhead": sp["time_over_flop_overhead"]}
        if "ours_over_diffusers" in sp:
            ratios["ours / diffusers"] = sp["ours_over_diffusers"]
        bars = ax.bar(list(ratios), list(ratios.values()), color="#2a7")
        for b, v in zip(bars, ratios.values()):
            ax.text(b.get_x() + b.get_width() / 2, v, f"{v:.3f}", ha="center", va="bottom")
        ax.axhline(TARGETS["time_over_flop_overhead"], color="#c33", ls="--", lw=1, label="target time/FLOP <= 1.05")
        if "ours_over_diffusers" in sp:
            ax.axhline(TARGETS["ours_over_diffusers"], color="#37c", ls=":", lw=1, label="target ours/diffusers <= 0.9")
        ax.legend(fontsize=8)
        ax.set_title("ratios")
        ax.tick_params(axis="x", labelsize=8)
    mem = result.get("memory")
    ax = axes[1][0]
    if mem:
        for label, rows in mem["rows"].items():
            if rows:
                ax.plot([r["frames"] for r in rows], [r["sampling_rise_mb"] for r in rows], "o-", label=label)
        ax.set_xlabel("frames")
        ax.set_ylabel("peak RSS rise while sampling (MB)")
        ax.set_title(f"memory vs frames ({mem['size']}px)")
        ax.legend(fontsize=8)
    load = result.get("load")
    ax = axes[1][1]
    if load:
        labels = [r["label"] for r in load]
        x = range(len(labels))
        ax.bar([i - 0.2 for i in x], [r["load_s"] for r in load], width=0.4, label="load_motion_model")
        ax.bar([i + 0.2 for i in x], [r["ready_s"] for r in load], width=0.4, label="ready for fp32 (all pages read)")
        ax.set_xticks(list(x), labels)
        ax.set_ylabel("seconds (median, warm page cache)")
        ax.set_title("SD1.5 v2 motion module load time")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def machine(device: str) -> dict:
    import torch
    info = {"device": device, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "cpu_count": os.cpu_count()}
    if device == "cpu":
        info["cpu"] = platform.processor() or platform.machine()
        try:
            info["load_average_at_start"] = os.getloadavg()
        except OSError:
            pass
    else:
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="SD1.5 shapes, 512x512, 16 frames, 20 steps (for a GPU)")
    ap.add_argument("--frames", type=int)
    ap.add_argument("--size", type=int, help="image size in pixels (latent = size / 8)")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--repeats", type=int, help="timed rounds after the warm-up")
    ap.add_argument("--cfg", type=float, default=7.5)
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--attention", choices=["pytorch", "host-default"], default="pytorch",
                    help="the host's spatial attention: torch SDPA, as diffusers (default), or what the host picks")
    ap.add_argument("--dtype", choices=["auto", *DTYPE_FLAGS], default="auto",
                    help="the UNet's (and so the motion modules') dtype: the host's choice, or its --fp16-unet, "
                         "--bf16-unet, --force-fp32")
    ap.add_argument("--compile", action="store_true",
                    help="run the motion modules' token path through torch.compile (ANIMATEDIFF_TORCH_COMPILE=1)")
    ap.add_argument("--memory-frames", type=int, nargs="+")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-diffusers", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-load", action="store_true")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--name", help="output file stem (default: quick / full)")
    args = ap.parse_args()
    preset = FULL if args.full else QUICK
    if args.compile:
        os.environ["ANIMATEDIFF_TORCH_COMPILE"] = "1"  # read when the pack is imported (setup_host)
    for key in ("frames", "size", "steps", "repeats"):
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    mode = "full" if args.full else "quick"
    result = {"mode": mode, "command": " ".join([os.path.relpath(sys.executable, ROOT)] + [os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
              "settings": {"frames": args.frames, "size": args.size, "steps": args.steps, "cfg": args.cfg,
                           "repeats": args.repeats, "sampler": "euler", "scheduler": "normal",
                           "attention": args.attention, "dtype": args.dtype, "compile": args.compile},
              "machine": machine(device), "targets": TARGETS, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    log(f"{mode} mode: {args.frames} frames, {args.size}x{args.size}, {args.steps} steps, cfg {args.cfg}, "
        f"{result['machine']['threads']} threads on {device}")
    if not args.skip_speed:
        host = setup_host(device, args.attention, args.dtype)
        models = load_models(args.full)
        result["models"] = models["name"]
        result["speed"] = speed(host, models, args, device)
        del models
        sp = result["speed"]
        log(f"unet calls in the warm-up run (batch sizes): {sp['unet_calls_warmup']}")
        log(f"animation overhead: time x{sp['time_overhead']:.3f}, FLOPs x{sp['flop_overhead']:.3f} -> "
            f"time/FLOP overhead {sp['time_over_flop_overhead']:.3f} (target <= {TARGETS['time_over_flop_overhead']}; "
            f"paired by round {sp['time_over_flop_overhead_paired']:.3f}, from the fastest runs "
            f"{sp['time_over_flop_overhead_by_min']:.3f})")
        if "ours_over_diffusers" in sp:
            log(f"peer: ours {sp['median_s']['ours']:.2f} s / diffusers {sp['median_s']['diffusers']:.2f} s = "
                f"x{sp['ours_over_diffusers']:.3f} (target <= {TARGETS['ours_over_diffusers']}; paired by round "
                f"{sp['ours_over_diffusers_paired']:.3f}, from the fastest runs {sp['ours_over_diffusers_by_min']:.3f}, "
                f"in CPU time {sp['ours_over_diffusers_cpu']:.3f}); diffusers does x{sp['diffusers_flops_over_ours']:.3f} "
                f"our FLOPs")
    if not args.skip_memory:
        result["memory"] = memory(args.memory_frames or preset["memory_frames"], preset["memory_size"])
        if device != "cpu":
            result["memory"]["note"] = "peak RSS is host memory; the GPU's memory is not measured here"
    if not args.skip_load:
        from load_time import measure as load_measure
        result["load"] = load_measure(preset["load_repeats"], log=log)
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, args.name or mode)
    with open(stem + ".json", "w") as f:
        json.dump(result, f, indent=1, default=str)
    plot(result, stem + ".png")
    log(f"wrote {stem}.json and {stem}.png")


if __name__ == "__main__":
    main()
