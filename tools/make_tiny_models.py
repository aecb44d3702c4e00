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
* ``controlnet/tiny_controlnet_sd15.safetensors``: a ControlNet for the tiny SD1.5 UNet in the original
  lllyasviel key format (``control_model.`` + the host's ``comfy.cldm.cldm.ControlNet`` names: time_embed,
  input_hint_block, input_blocks, zero_convs.N.0, middle_block, middle_block_out.0), RGB hint. The zero
  convs are seeded, not zero, scaled so that a hint visibly moves the UNet's output (strength 1 changes a
  one-step eps on a 64x64 image by 0.29 on average, 1.3 at most, cfg 1, on both hosts). Its five residuals
  (4 input blocks + middle) fit the tiny UNet exactly.
* ``controlnet/tiny_t2i_adapter_sd15.safetensors``: a T2I-Adapter in the TencentARC SD1.5 key format
  (``conv_in``, ``body.N.block1/block2/in_conv``; RGB hint, pixel-unshuffle 8, so conv_in has 192 inputs),
  conv_in width 320, 1x1 ``block2`` and pooled downsampling (the loader reads both choices from the
  file). The host's loader ties the widths to conv_in ([320, 640, 1280, 1280]) and lays the features out
  for SD1.5's 12 input blocks: with the tiny UNet's 4 input blocks only the first feature (320 channels at
  latent resolution) is popped, onto input block 2, the downsample, whose output has half the latent's
  size. So the adapter fits without a shape-mismatch warning only on a 1x1 latent (an 8x8 hint); at any
  larger size the host logs "control could not be applied" and skips it. See t2i_adapter_tensors. (The
  loader also requires the 640/1280-channel levels that never reach the tiny UNet: 155 MB in fp16.)
* ``controlnet/tiny_sparsectrl_rgb.safetensors`` / ``tiny_sparsectrl_scribble.safetensors``: SparseCtrl
  (AnimateDiff v3's sparse ControlNet) for the tiny SD1.5 UNet in the original key layout, RGB (latent
  condition) and scribble (image condition). See sparsectrl_tensors.

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
GENERATOR_VERSION = 5
SEED = 20241125

# The UNet: SD1.5-detectable, as small as detection allows (docs/comfyui-host.md §6.1).
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
# AnimateDiff-SDXL placement (docs/motion-module-formats.md §5.2): 2 modules per down level, 3 per up level, no mid block.
TINY_SDXL_MOTION_DOWN = [[320, 320]] * 3
TINY_SDXL_MOTION_UP = [[320] * 3] * 3

# The ControlNet for TINY_UNET: RGB hint; zero convs scaled down from seeded_value's unit gain so that the
# residuals are a visible, not explosive, change of the UNet's output.
TINY_CONTROLNET_HINT_CHANNELS = 3
TINY_CONTROLNET_ZERO_CONV_SCALE = 0.1
# The T2I-Adapter (SD1.5 layout): conv_in width 320 (= the UNet's channels where its first feature lands),
# RGB pixel-unshuffled by 8, 1x1 block2 convs and pooling downsamples to keep the file smaller.
TINY_T2I_ADAPTER = dict(cin=3 * 8 * 8, channels=[320, 640, 1280, 1280], nums_rb=2, ksize=1, sk=True,
                        use_conv=False, xl=False)


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
    comfy.cli_args.args.cpu = True  # before model_management is imported (docs/comfyui-host.md §5.4)
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


def controlnet_tensors(host: str, seed: int = SEED + 4, zero_conv_scale: float = TINY_CONTROLNET_ZERO_CONV_SCALE,
                       dtype=torch.float16) -> dict:
    """A ControlNet for TINY_UNET in the original (lllyasviel) key format: ``control_model.`` + the names of
    the host's ``comfy.cldm.cldm.ControlNet`` built on the meta device. Zero convs (``zero_convs.N.0`` and
    ``middle_block_out.0``) are seeded too, times ``zero_conv_scale``."""
    import_host(host)
    from comfy.cldm.cldm import ControlNet
    config = {k: v for k, v in TINY_UNET.items() if k != "out_channels"}
    with torch.no_grad(), torch.device("meta"):
        net = ControlNet(**config, hint_channels=TINY_CONTROLNET_HINT_CHANNELS, device="meta")
    out = {}
    for k, v in net.state_dict().items():
        value = seeded_value("control_model." + k, v.shape, seed)
        if k.startswith(("zero_convs.", "middle_block_out.")):
            value = value * zero_conv_scale
        out["control_model." + k] = value.to(dtype)
    return out


def t2i_adapter_tensors(host: str, seed: int = SEED + 5, dtype=torch.float16, **adapter) -> dict:
    """A T2I-Adapter in the TencentARC key format (``conv_in.*``, ``body.N.*``), as the host's
    ``comfy.controlnet.load_t2i_adapter`` recognises it, for ``TINY_T2I_ADAPTER`` updated by ``adapter``
    (cin 256 or 768 makes the host read it as an SDXL adapter). Names and shapes come from the host's
    ``comfy.t2i_adapter.adapter.Adapter`` on the meta device.

    How the host applies it (both hosts): the SD1.5 adapter returns 12 input features, one per input block
    of SD1.5's UNet, non-empty at blocks 2, 5, 8, 11 (widths c, 2c, 4c, 4c at 1, 1/2, 1/4, 1/8 of the
    latent's size); the UNet pops one per input block. The tiny UNet has 4 input blocks (conv, ResBlock,
    Downsample, ResBlock), so only feature 0 is used, on block 2, the Downsample: 320 channels at half the
    latent's size. The shapes agree only for a 1x1 latent (c = 320); for any other size the host logs
    "control could not be applied" and skips the residual. (An SDXL-layout adapter, cin 768, puts feature 0
    on block 3 at a matching 320 x latent/2, but always sends a 4c = 1280-channel feature to the 320-channel
    middle block, which logs the warning on every call.) The smallest UNet that takes this adapter at any
    size: TINY_UNET with num_res_blocks [2, 1] (one more ResBlock and transformer at level 0), so that
    block 2 is a full-resolution 320-channel ResBlock."""
    import_host(host)
    from comfy.t2i_adapter.adapter import Adapter
    config = {**TINY_T2I_ADAPTER, **adapter}
    with torch.no_grad(), torch.device("meta"):
        net = Adapter(**config)
    return {k: seeded_value(k, v.shape, seed).to(dtype) for k, v in net.state_dict().items()}


def sparsectrl_tensors(mode: str, seed: int = SEED + 6, zero_conv_scale: float = TINY_CONTROLNET_ZERO_CONV_SCALE,
                       dtype=torch.float16) -> dict:
    """A SparseCtrl for TINY_UNET in the original AnimateDiff key layout (docs/sparsectrl.md): two levels of
    320 channels with one ResNet + spatial transformer + motion module each, a mid block, PE 32 stored;
    ``mode`` "rgb" (simplified embedding, 4 latent channels + mask) or "scribble" (the released encoder
    widths 16/32/96/256, 3 image channels + mask). Its 4 down residuals and the mid one fit the tiny UNet's
    input blocks. The released file's zero-initialised convs (the residual convs, the condition embedding's
    output) are seeded here; the residual convs times ``zero_conv_scale``."""
    sys.path.insert(0, ROOT)
    from motion_modules.sparse_control import SparseCtrlFormat, expected_keys
    from motion_modules.temporal import sinusoidal_table
    fmt = SparseCtrlFormat(mode=mode, channels=(320, 320), layers_per_block=1, attention=(True, True),
                           motion=(True, True), condition_channels=4 if mode == "rgb" else 3,
                           embedding=None if mode == "rgb" else (16, 32, 96, 256), context_dim=768, pe_length=32,
                           pe_stored=True)
    out = {}
    for key, shape in expected_keys(fmt).items():
        if key.endswith("pos_encoder.pe"):
            value = sinusoidal_table(shape[1], shape[2])
        else:
            value = seeded_value(f"{mode}.{key}", shape, seed)
            if key.startswith(("controlnet_down_blocks.", "controlnet_mid_block.")) and len(shape) > 1:
                value = value * zero_conv_scale
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
    cnet = os.path.join(args.out, "controlnet", "tiny_controlnet_sd15.safetensors")
    t2i = os.path.join(args.out, "controlnet", "tiny_t2i_adapter_sd15.safetensors")
    sparse_rgb = os.path.join(args.out, "controlnet", "tiny_sparsectrl_rgb.safetensors")
    sparse_scribble = os.path.join(args.out, "controlnet", "tiny_sparsectrl_scribble.safetensors")
    from safetensors.torch import save_file
    meta = {"generator": f"make_tiny_models v{GENERATOR_VERSION}"}
    makers = {
        ckpt: lambda p: make_checkpoint(host, p),
        mm: lambda p: _atomic_save(save_file, motion_module_tensors(TINY_MOTION_DOWN, TINY_MOTION_MID,
                                                                    TINY_MOTION_UP), p, meta),
        sdxl: lambda p: make_sdxl_checkpoint(host, p),
        mm_sdxl: lambda p: _atomic_save(save_file, sdxl_motion_module_tensors(), p, meta),
        cnet: lambda p: _atomic_save(save_file, controlnet_tensors(host), p, meta),
        t2i: lambda p: _atomic_save(save_file, t2i_adapter_tensors(host), p, meta),
        sparse_rgb: lambda p: _atomic_save(save_file, sparsectrl_tensors("rgb"), p, meta),
        sparse_scribble: lambda p: _atomic_save(save_file, sparsectrl_tensors("scribble"), p, meta),
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
