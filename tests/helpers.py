"""Small builders shared by tests (not fixtures: plain functions)."""

from __future__ import annotations

import torch

from tools.make_tiny_models import SD15_CONFIG, SDXL_CONFIG, motion_module_tensors  # noqa: F401

# A small AnimateDiff-format layout: two levels of 64 channels, v2-style mid block.
SMALL_DOWN = [[64], [64]]
SMALL_UP = [[64, 64], [64, 64]]


def small_motion_tensors(mid=64, pe_length=32, dtype=torch.float32, seed=7):
    return motion_module_tensors(SMALL_DOWN, mid, SMALL_UP, pe_length=pe_length, seed=seed, dtype=dtype)


def manifest_tensors(manifest: dict, dtype=torch.float16) -> dict:
    """Meta-device tensors with exactly a manifest's keys and shapes (no memory)."""
    return {k: torch.empty(shape, dtype=dtype, device="meta") for k, shape in manifest.items()}


# ---- issue 3: every format, motion LoRAs, SDXL ------------------------------------------------

# Small layouts with the structure (modules per level) of each real UNet family, at 64 channels.
SD15_STRUCT_DOWN = [[64, 64]] * 4
SD15_STRUCT_UP = [[64] * 3] * 4
SDXL_STRUCT_DOWN = [[64, 64]] * 3
SDXL_STRUCT_UP = [[64] * 3] * 3


def in_layout(ad_tensors: dict, layout: str) -> dict:
    """AnimateDiff-named tensors renamed to another file layout (HotShot-XL / diffusers MotionAdapter)."""
    from motion_modules.formats import file_keys
    return file_keys(ad_tensors, layout)


def vector_module_tensors(vector: dict, down, mid, up, pe: bool = True) -> dict:
    """An AnimateDiff-format state dict in which every module holds the reference vector's 64-channel
    weights (tests/data/vectors)."""
    weights = {k[len("weights."):]: v for k, v in vector.items() if k.startswith("weights.")}
    if not pe:
        weights = {k: v for k, v in weights.items() if not k.endswith("pos_encoder.pe")}
    prefixes = [f"down_blocks.{i}.motion_modules.{j}" for i, lvl in enumerate(down) for j in range(len(lvl))]
    prefixes += ["mid_block.motion_modules.0"] if mid else []
    prefixes += [f"up_blocks.{i}.motion_modules.{j}" for i, lvl in enumerate(up) for j in range(len(lvl))]
    return {f"{p}.{k}": v.clone() for p in prefixes for k, v in weights.items()}


def motion_lora_tensors(down, mid, up, rank=4, seed=11, to_out="to_out", scale=0.05) -> dict:
    """A motion LoRA in the AnimateDiff v2 MotionLoRA key format for any layout (``to_out`` may be
    spelled "to_out" or "to_out.0", as real files do)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    modules = [(f"down_blocks.{i}.motion_modules.{j}", c) for i, lvl in enumerate(down) for j, c in enumerate(lvl)]
    modules += [("mid_block.motion_modules.0", mid)] if mid else []
    modules += [(f"up_blocks.{i}.motion_modules.{j}", c) for i, lvl in enumerate(up) for j, c in enumerate(lvl)]
    for prefix, c in modules:
        for a in (0, 1):
            for proj in ("to_q", "to_k", "to_v", to_out):
                base = (f"{prefix}.temporal_transformer.transformer_blocks.0.attention_blocks.{a}."
                        f"processor.{proj}_lora")
                out[base + ".down.weight"] = scale * torch.randn(rank, c, generator=g)
                out[base + ".up.weight"] = scale * torch.randn(c, rank, generator=g)
    return out


def domain_adapter_tensors(unet_config: dict, rank=8, seed=13, scale=0.05) -> dict:
    """A spatial LoRA in the AnimateDiff v3 domain-adapter key format (diffusers UNet names, processor
    LoRA, docs/motion-module-formats.md §3.10) for every spatial transformer of an LDM UNet config."""
    g = torch.Generator().manual_seed(seed)
    ch, ctx = unet_config["model_channels"], unet_config["context_dim"]
    mult, res = unet_config["channel_mult"], unet_config["num_res_blocks"]
    depth = iter(unet_config["transformer_depth"])
    blocks = []
    for level, m in enumerate(mult):
        for j in range(res[level]):
            if next(depth):
                blocks.append((f"down_blocks.{level}.attentions.{j}", ch * m))
    blocks.append(("mid_block.attentions.0", ch * mult[-1]))
    out_depth = list(unet_config["transformer_depth_output"])
    for level, m in enumerate(reversed(mult)):
        for j in range(res[len(mult) - 1 - level] + 1):
            if out_depth.pop():
                blocks.append((f"up_blocks.{level}.attentions.{j}", ch * m))
    out = {}
    for prefix, c in blocks:
        for attn in ("attn1", "attn2"):
            for proj in ("to_q", "to_k", "to_v", "to_out"):
                c_in = ctx if attn == "attn2" and proj in ("to_k", "to_v") else c
                base = f"{prefix}.transformer_blocks.0.{attn}.processor.{proj}_lora"
                out[base + ".down.weight"] = scale * torch.randn(rank, c_in, generator=g)
                out[base + ".up.weight"] = scale * torch.randn(c, rank, generator=g)
    return out


def host_nodes(host):
    """The host's own ``nodes`` module (KSampler, LoraLoader, …)."""
    return host.nodes


def sample(host, model, frames, seed=1, cfg=7.5, steps=2, size=8, negative_tokens=77, context_dim=768):
    """The host's own sampler on a batch of ``frames`` empty latents, with seeded random conditioning."""
    latent = torch.zeros(frames, 4, size, size)
    noise = host.comfy.sample.prepare_noise(latent, seed)
    g = torch.Generator().manual_seed(5)
    positive = [[torch.randn(1, 77, context_dim, generator=g), {}]]
    negative = [[torch.randn(1, negative_tokens, context_dim, generator=g), {}]]
    with torch.inference_mode():
        return host.comfy.sample.sample(model, noise, steps, cfg, "euler", "normal", positive, negative, latent,
                                        seed=seed, disable_pbar=True)
