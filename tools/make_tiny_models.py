"""Write the embedded tiny models, deterministically, from a seed.

* ``checkpoints/tiny_sd15.safetensors``: a checkpoint that ComfyUI's CheckpointLoaderSimple detects as
  SD1.5 (UNet width 320 and CLIP-L context 768, but only two levels with one ResBlock each), with a
  full-size random CLIP-L text encoder and a TAESD-sized VAE. Key names and shapes are read from the
  host's own module classes (built on the meta device), values come from our seeded generator.
* ``animatediff_models/tiny_mm_v2.safetensors``: a motion module in the original AnimateDiff v2 key
  format (mid block, PE length 32) laid out for that UNet.
* ``checkpoints/tiny_sdxl.safetensors``: a UNet (plus TAESD VAE, no text encoders) that the host detects
  as SDXL. Detection fixes model_channels 320, context_dim 2048, adm_in_channels 2816, linear
  proj_in and the input transformer depths [0,0,2,2,10,10] (so three levels of two ResBlocks, as in SDXL);
  the channel multipliers, the output/middle transformer depths and everything else may shrink, so every
  level stays at 320 channels.
* ``animatediff_models/tiny_mm_sdxl.safetensors``: an AnimateDiff-SDXL-layout motion module (6 down /
  9 up modules, no mid block, PE 32, fp16) for that UNet.

Random weights draw abstract moving patterns, not pictures; that is all the tests and the demo need.
Run by ``scripts/setup.sh``; a stamp file makes re-runs instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zlib

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GENERATOR_VERSION = 3
SEED = 20241125

# The UNet: SD1.5-detectable, as small as detection allows (spec comfyui-host.md §6.1).
TINY_UNET = dict(
    image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[1, 1],
    channel_mult=[1, 1], transformer_depth=[1, 1], transformer_depth_output=[1, 1, 1, 1],
    transformer_depth_middle=1, context_dim=768, num_heads=8, num_head_channels=-1,
    use_linear_in_transformer=False, use_spatial_transformer=True, legacy=False, adm_in_channels=None,
    use_checkpoint=False, use_temporal_attention=False, use_temporal_resblock=False,
)
# Full-size UNet configs, as the host detects the real checkpoints (for meta-device models in tests and
# benchmarks).
SD15_CONFIG = dict(
    image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2, 2],
    channel_mult=[1, 2, 4, 4], transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0],
    transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], transformer_depth_middle=1, context_dim=768,
    num_heads=8, num_head_channels=-1, use_linear_in_transformer=False, use_spatial_transformer=True, legacy=False,
    adm_in_channels=None, use_checkpoint=False, use_temporal_attention=False, use_temporal_resblock=False)
SDXL_CONFIG = dict(
    image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2],
    channel_mult=[1, 2, 4], transformer_depth=[0, 0, 2, 2, 10, 10],
    transformer_depth_output=[0, 0, 0, 2, 2, 2, 10, 10, 10], transformer_depth_middle=10, context_dim=2048,
    num_heads=-1, num_head_channels=64, use_linear_in_transformer=True, use_spatial_transformer=True, legacy=False,
    adm_in_channels=2816, num_classes="sequential", use_checkpoint=False, use_temporal_attention=False,
    use_temporal_resblock=False)
# Per level, one motion module per ResBlock going down, one per output block going up.
TINY_MOTION_DOWN = [[320], [320]]
TINY_MOTION_MID = 320
TINY_MOTION_UP = [[320, 320], [320, 320]]

# The SDXL UNet: SDXL-detectable (comfy/supported_models.py SDXL.unet_config), 320 channels at every level.
TINY_SDXL_UNET = dict(
    image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2],
    channel_mult=[1, 1, 1], transformer_depth=[0, 0, 2, 2, 10, 10],
    transformer_depth_output=[0, 0, 0, 1, 1, 1, 1, 1, 1], transformer_depth_middle=1, context_dim=2048,
    num_heads=-1, num_head_channels=64, use_linear_in_transformer=True, use_spatial_transformer=True,
    legacy=False, adm_in_channels=2816, num_classes="sequential", use_checkpoint=False,
    use_temporal_attention=False, use_temporal_resblock=False,
)
# AnimateDiff-SDXL placement (spec §5.2): 2 modules per down level, 3 per up level, no mid block.
TINY_SDXL_MOTION_DOWN = [[320, 320]] * 3
TINY_SDXL_MOTION_UP = [[320] * 3] * 3


def seeded_value(key: str, shape, seed: int) -> torch.Tensor:
    """A deterministic tensor for one key: independent of key order and of torch's global RNG."""
    g = torch.Generator().manual_seed(seed + zlib.crc32(key.encode()))
    shape = tuple(shape)
    if len(shape) == 0:
        return torch.tensor(1.0)
    noise = torch.randn(shape, generator=g)
    if len(shape) == 1:
        if key.endswith("weight"):          # norm scales
            return 1.0 + 0.1 * noise
        return 0.02 * noise                 # biases
    fan_in = 1
    for s in shape[1:]:
        fan_in *= s
    if "embedding" in key:
        return 0.02 * noise
    return noise / fan_in ** 0.5


def import_host(host: str):
    sys.path.insert(0, host)
    import comfy.options
    comfy.options.enable_args_parsing(False) if hasattr(comfy.options, "enable_args_parsing") else None
    import comfy.cli_args
    comfy.cli_args.args.cpu = True  # before model_management is imported (comfyui-host.md §5.4)
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    from comfy import sd1_clip
    from comfy.taesd.taesd import TAESD
    return UNetModel, sd1_clip, TAESD


def checkpoint_shapes(host: str) -> dict[str, tuple]:
    UNetModel, sd1_clip, TAESD = import_host(host)
    shapes = {}
    with torch.no_grad(), torch.device("meta"):
        unet = UNetModel(**TINY_UNET, device="meta")
        clip = sd1_clip.SDClipModel(device="meta")
        vae = TAESD()
    for k, v in unet.state_dict().items():
        shapes["model.diffusion_model." + k] = tuple(v.shape)
    for k, v in clip.state_dict().items():
        if k.endswith("position_ids"):
            continue
        shapes["cond_stage_model." + k] = tuple(v.shape)
    for k, v in vae.state_dict().items():
        shapes["first_stage_model." + k] = tuple(v.shape)
    return shapes


def make_checkpoint(host: str, path: str):
    _write_checkpoint(checkpoint_shapes(host), path, SEED)


def _write_checkpoint(shapes: dict, path: str, seed: int):
    from safetensors.torch import save_file
    tensors = {}
    for key, shape in sorted(shapes.items()):
        value = seeded_value(key, shape, seed)
        if key.endswith("logit_scale"):
            value = torch.tensor(4.6052)
        if key.endswith("vae_scale"):
            value = torch.tensor(1.0)
        tensors[key] = value.to(torch.float16)
    _atomic_save(save_file, tensors, path, {"generator": f"make_tiny_models v{GENERATOR_VERSION}"})


def sdxl_checkpoint_shapes(host: str) -> dict[str, tuple]:
    UNetModel, _, TAESD = import_host(host)
    shapes = {}
    with torch.no_grad(), torch.device("meta"):
        unet = UNetModel(**TINY_SDXL_UNET, device="meta")
        vae = TAESD()
    for k, v in unet.state_dict().items():
        shapes["model.diffusion_model." + k] = tuple(v.shape)
    for k, v in vae.state_dict().items():
        shapes["first_stage_model." + k] = tuple(v.shape)
    return shapes


def make_sdxl_checkpoint(host: str, path: str):
    _write_checkpoint(sdxl_checkpoint_shapes(host), path, SEED + 2)


def sdxl_motion_module_tensors() -> dict:
    return motion_module_tensors(TINY_SDXL_MOTION_DOWN, None, TINY_SDXL_MOTION_UP, pe_length=32, seed=SEED + 3,
                                 dtype=torch.float16)


def motion_module_tensors(down, mid, up, pe_length=32, seed=SEED + 1, dtype=torch.float32) -> dict:
    """A motion module in the original AnimateDiff key format for any layout (also used by tests)."""
    sys.path.insert(0, ROOT)
    from motion_modules.formats import SQRT_LINEAR_AD, MotionFormat, expected_keys
    from motion_modules.temporal import sinusoidal_table
    fmt = MotionFormat(name="", version="", family="", down=down, mid=mid, up=up, pe_length=pe_length,
                       pe_stored=True, cross_frame_motion_norm=False, cross_frame_unet_norm=False,
                       beta_schedule=SQRT_LINEAR_AD)
    out = {}
    for key, shape in expected_keys(fmt).items():
        if key.endswith("pos_encoder.pe"):
            value = sinusoidal_table(shape[1], shape[2])
        else:
            value = seeded_value(key, shape, seed)
        out[key] = value.to(dtype)
    return out


def _atomic_save(save_file, tensors, path, metadata):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.partial"
    save_file(tensors, tmp, metadata=metadata)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="models folder to write into")
    ap.add_argument("--host", default=None, help="ComfyUI folder (default: the one scripts/setup.sh chose)")
    args = ap.parse_args()
    host = args.host or open(os.path.join(ROOT, ".cache", "host-dir")).read().strip()
    stamp_path = os.path.join(args.out, "tiny-models.json")
    stamp = {"generator_version": GENERATOR_VERSION, "seed": SEED}
    ckpt = os.path.join(args.out, "checkpoints", "tiny_sd15.safetensors")
    mm = os.path.join(args.out, "animatediff_models", "tiny_mm_v2.safetensors")
    sdxl = os.path.join(args.out, "checkpoints", "tiny_sdxl.safetensors")
    mm_sdxl = os.path.join(args.out, "animatediff_models", "tiny_mm_sdxl.safetensors")
    from safetensors.torch import save_file
    meta = {"generator": f"make_tiny_models v{GENERATOR_VERSION}"}
    makers = {
        ckpt: lambda p: make_checkpoint(host, p),
        mm: lambda p: _atomic_save(save_file, motion_module_tensors(TINY_MOTION_DOWN, TINY_MOTION_MID,
                                                                    TINY_MOTION_UP), p, meta),
        sdxl: lambda p: make_sdxl_checkpoint(host, p),
        mm_sdxl: lambda p: _atomic_save(save_file, sdxl_motion_module_tensors(), p, meta),
    }
    try:
        current = json.load(open(stamp_path)) == stamp
    except (OSError, ValueError):
        current = False
    todo = [p for p in makers if not (current and os.path.exists(p))]
    if not todo:
        print(f"tiny models up to date in {args.out}")
        return
    for path in todo:
        makers[path](path)
    os.makedirs(os.path.join(args.out, "animatediff_motion_lora"), exist_ok=True)
    with open(stamp_path, "w") as f:
        json.dump(stamp, f)
    print(f"wrote {', '.join(todo)}")


if __name__ == "__main__":
    main()
