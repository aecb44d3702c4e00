"""SDXL inside a real ComfyUI host (in-process): a tiny checkpoint the host detects as SDXL, motion
modules at the SDXL UNet positions, the host's KSampler animating, per-family beta schedules and
GroupNorms, and SD1.5/SDXL mismatches."""

import os
import types

import pytest
import torch
from safetensors.torch import save_file

from motion_modules.formats import LAYOUT_DIFFUSERS, LAYOUT_HOTSHOT
from tests.helpers import SD15_CONFIG, SDXL_CONFIG, host_nodes, in_layout, manifest_tensors
from tools import make_tiny_models as tiny

MODELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache", "models")


@pytest.fixture(scope="module")
def sdxl_files(host, tmp_path_factory):
    """The tiny SDXL checkpoint and motion module that scripts/setup.sh writes (made here if missing)."""
    ckpt = os.path.join(MODELS, "checkpoints", "tiny_sdxl.safetensors")
    mm = os.path.join(MODELS, "animatediff_models", "tiny_mm_sdxl.safetensors")
    if not (os.path.exists(ckpt) and os.path.exists(mm)):
        out = tmp_path_factory.mktemp("tiny_sdxl")
        ckpt, mm = str(out / "tiny_sdxl.safetensors"), str(out / "tiny_mm_sdxl.safetensors")
        tiny.make_sdxl_checkpoint(host.dir, ckpt)
        save_file(tiny.sdxl_motion_module_tensors(), mm)
    return types.SimpleNamespace(checkpoint=ckpt, motion_module=mm)


@pytest.fixture(scope="module")
def sdxl(host, sdxl_files):
    with torch.inference_mode():
        model, _, vae = host.comfy.sd.load_checkpoint_guess_config(
            sdxl_files.checkpoint, output_vae=True, output_clip=False)[:3]
    return types.SimpleNamespace(model=model, vae=vae)


@pytest.fixture(scope="module")
def sdxl_motion(host, sdxl_files):
    return host.motion_modules.load_motion_model(sdxl_files.motion_module)


def ksample(host, model, frames=4, seed=3, steps=1, cfg=6.0):
    """The host's own KSampler node, with SDXL conditioning (context 2048 + pooled 1280; 8 tokens instead
    of CLIP's 77 keep the cross-attention cheap on a CPU)."""
    nodes = host_nodes(host)
    g = torch.Generator().manual_seed(7)

    def cond():
        return [[torch.randn(1, 8, 2048, generator=g), {"pooled_output": torch.randn(1, 1280, generator=g)}]]
    positive, negative = cond(), cond()
    latent = {"samples": torch.zeros(frames, 4, 8, 8)}
    with torch.inference_mode():
        return nodes.KSampler().sample(model, seed, steps, cfg, "euler", "normal", positive, negative, latent)[0]["samples"]


def test_tiny_checkpoint_is_detected_as_sdxl(host, sdxl):
    import comfy.latent_formats
    import comfy.model_base
    import comfy.supported_models
    assert type(sdxl.model.model.model_config) is comfy.supported_models.SDXL
    assert type(sdxl.model.model) is comfy.model_base.SDXL
    assert isinstance(sdxl.model.model.latent_format, comfy.latent_formats.SDXL)
    unet = sdxl.model.model.diffusion_model
    assert (len(unet.input_blocks), len(unet.output_blocks)) == (9, 9)  # SDXL's block count


def test_modules_sit_at_the_sdxl_positions(host, sdxl, sdxl_motion):
    fmt = sdxl_motion.format
    assert (fmt.version, fmt.family, fmt.module_count, fmt.mid) == ("sdxl-beta", "SDXL", 15, None)
    patched = host.host_module.apply_motion_model(sdxl.model, sdxl_motion, 1.0, None)
    blocks = {k[len("diffusion_model."):]: v for k, v in patched.object_patches.items()
              if k.startswith("diffusion_model.")}
    assert sorted(blocks) == sorted([f"input_blocks.{i}" for i in (1, 2, 4, 5, 7, 8)]
                                    + [f"output_blocks.{i}" for i in range(9)])
    order = {name: [(n, type(c).__name__) for n, c in block._modules.items()] for name, block in blocks.items()}
    # Level 0 has no attention: after the ResBlock. Levels 1/2: after the SpatialTransformer.
    assert order["input_blocks.1"] == [("0", "ResBlock"), ("motion", "TemporalLayer")]
    assert order["input_blocks.4"] == [("0", "ResBlock"), ("1", "SpatialTransformer"), ("motion", "TemporalLayer")]
    # Up blocks: before the Upsample of output blocks 2 and 5; output blocks 6-8 are ResBlock only.
    assert order["output_blocks.2"] == [("0", "ResBlock"), ("1", "SpatialTransformer"), ("motion", "TemporalLayer"),
                                        ("2", "Upsample")]
    assert order["output_blocks.5"][2:] == [("motion", "TemporalLayer"), ("2", "Upsample")]
    assert order["output_blocks.8"] == [("0", "ResBlock"), ("motion", "TemporalLayer")]
    # Each position got the module of the same name, in UNet order.
    names = [n for n, _ in sdxl_motion.modules_in(torch.float32).in_unet_order()]
    placed = [blocks[k]._modules["motion"].motion for k in
              [f"input_blocks.{i}" for i in (1, 2, 4, 5, 7, 8)] + [f"output_blocks.{i}" for i in range(9)]]
    by_name = dict(sdxl_motion.modules_in(torch.float32).in_unet_order())
    assert [by_name[n] for n in names] == placed
    assert all(blocks[k]._modules["motion"].cross_frame_norm for k in blocks)  # SDXL beta: cross-frame GN
    assert "diffusion_model.middle_block" not in patched.object_patches


def test_host_ksampler_animates_sdxl(host, sdxl, sdxl_motion):
    plain = ksample(host, sdxl.model)
    patched = host.host_module.apply_motion_model(sdxl.model, sdxl_motion, 1.0,
                                                  sdxl_motion.format.beta_schedule)
    animated = ksample(host, patched)
    assert animated.shape == (4, 4, 8, 8) and torch.isfinite(animated).all()
    assert (animated - plain).abs().max() > 1e-3
    assert not sdxl.model.object_patches  # the input MODEL is untouched


def sigma_max(linear_start, linear_end, sqrt_linear=False):
    if sqrt_linear:
        betas = torch.linspace(linear_start, linear_end, 1000, dtype=torch.float64)
    else:
        betas = torch.linspace(linear_start ** 0.5, linear_end ** 0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1 - betas, dim=0)
    return float(((1 - alphas_cumprod[-1]) / alphas_cumprod[-1]) ** 0.5)


def converted(host, tensors, layout, tmp_path, name):
    return host.motion_modules.motion_model_from_tensors(in_layout(tensors, layout), source=name)


def test_beta_schedule_and_groupnorm_per_sdxl_format(host, sdxl, sdxl_motion, tmp_path):
    ad = tiny.sdxl_motion_module_tensors()
    apply = host.host_module.apply_motion_model
    current = host.host_module.current_model_sampling
    # AnimateDiff SDXL beta: linear 0.00085 -> 0.020.
    beta = current(apply(sdxl.model, sdxl_motion, 1.0, sdxl_motion.format.beta_schedule))
    assert float(beta.sigma_max) == pytest.approx(sigma_max(0.00085, 0.020), rel=1e-4)
    # HotShot-XL: the SDXL default schedule, per-frame motion GN, ResNet GroupNorms across frames.
    hotshot = converted(host, {k: v[:, :24].contiguous() if k.endswith(".pe") else v for k, v in ad.items()},
                        LAYOUT_HOTSHOT, tmp_path, "hsxl_temporal_layers.safetensors")
    assert (hotshot.format.version, hotshot.format.pe_length) == ("hotshot-xl", 24)
    patched = apply(sdxl.model, hotshot, 1.0, hotshot.format.beta_schedule)
    assert float(current(patched).sigma_max) == pytest.approx(sigma_max(0.00085, 0.012), rel=1e-4)
    resblocks = sum(type(m).__name__ == "ResBlock" for m in sdxl.model.model.diffusion_model.modules())
    cross = [k for k, v in patched.object_patches.items() if type(v).__name__ == "CrossFrameGroupNorm"]
    assert len(cross) == 2 * resblocks + 1 and resblocks == 17
    layers = [b._modules["motion"] for b in patched.object_patches.values() if "motion" in getattr(b, "_modules", {})]
    assert len(layers) == 15 and not any(layer.cross_frame_norm for layer in layers)
    # diffusers SDXL adapter: cross-frame motion GN, plain UNet, AnimateDiff-SDXL schedule.
    adapter = converted(host, ad, LAYOUT_DIFFUSERS, tmp_path, "diffusion_pytorch_model.safetensors")
    patched = apply(sdxl.model, adapter, 1.0, adapter.format.beta_schedule)
    layers = [b._modules["motion"] for b in patched.object_patches.values() if "motion" in getattr(b, "_modules", {})]
    assert len(layers) == 15 and all(layer.cross_frame_norm for layer in layers)
    assert not any(type(v).__name__ == "CrossFrameGroupNorm" for v in patched.object_patches.values())
    assert float(current(patched).sigma_max) == pytest.approx(sigma_max(0.00085, 0.020), rel=1e-4)


def test_sd15_module_on_tiny_sdxl_and_the_reverse(host, sdxl, sdxl_motion, sd15, tiny_models):
    sd15_motion = host.motion_modules.load_motion_model(tiny_models.motion_module)
    with pytest.raises(ValueError, match=r"'tiny_mm_v2.safetensors' .* does not fit this model's UNet .*: the module "
                                         r"has 2 down / 1 mid / 4 up layers .* the UNet has 6 down / 1 mid / 9 up"):
        host.host_module.apply_motion_model(sdxl.model, sd15_motion, 1.0, None)
    with pytest.raises(ValueError, match=r"'tiny_mm_sdxl.safetensors' \(AnimateDiff SDXL beta.*SDXL\) does not fit "
                                         r"this model's UNet"):
        host.host_module.apply_motion_model(sd15.model, sdxl_motion, 1.0, None)


def real_size_model(host, family):
    """A full-size SD1.5 or SDXL model on the meta device (no memory), wrapped as the host wraps models."""
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models
    config_class, model_class, unet = {"SD1.5": (comfy.supported_models.SD15, comfy.model_base.BaseModel, SD15_CONFIG),
                                       "SDXL": (comfy.supported_models.SDXL, comfy.model_base.SDXL, SDXL_CONFIG)}[family]
    with torch.device("meta"):
        model = model_class(config_class(dict(unet)), device="meta")
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)


@pytest.mark.parametrize("manifest,module_family,unet_family", [
    ("animatediff_v2_sd15.json", "SD1.5", "SDXL"),
    ("animatediff_sdxl_v10_beta.json", "SDXL", "SD1.5"),
    ("hotshot_xl_temporal_layers.json", "SDXL", "SD1.5"),
])
def test_real_sd15_and_sdxl_mismatch_messages(host, reference_data, manifest, module_family, unet_family):
    import json
    shapes = json.load(open(os.path.join(reference_data, "manifests", manifest)))
    motion = host.motion_modules.motion_model_from_tensors(manifest_tensors(shapes), source=manifest)
    model = real_size_model(host, unet_family)
    with pytest.raises(ValueError) as e:
        host.host_module.apply_motion_model(model, motion, 1.0, None)
    message = str(e.value)
    assert f"({motion.format.name}, {module_family}) does not fit this model's UNet ({unet_family})" in message
    assert f"An {module_family} motion module needs an {module_family} checkpoint" in message
    # and on the right family it fits (meta device: nothing is computed)
    fits = host.host_module.apply_motion_model(real_size_model(host, module_family), motion, 1.0, None)
    assert sum("motion" in getattr(v, "_modules", {}) for v in fits.object_patches.values()) == \
        motion.format.module_count


@pytest.mark.parametrize("family", ["SD1.5", "SDXL"])
def test_full_size_configs_are_what_the_host_detects(host, family):
    """The meta-device models above are the real architectures: the host's own detection, run on
    their keys and shapes, names the family's model class."""
    import comfy.model_detection
    import comfy.supported_models
    unet = real_size_model(host, family).model.diffusion_model
    state = {"model.diffusion_model." + k: v for k, v in unet.state_dict().items()}
    detected = comfy.model_detection.model_config_from_unet_config(
        comfy.model_detection.detect_unet_config(state, "model.diffusion_model."))
    assert type(detected) is {"SD1.5": comfy.supported_models.SD15, "SDXL": comfy.supported_models.SDXL}[family]


def test_per_frame_prompts_and_pooled_output_in_context_windows(host, sdxl, sdxl_motion):
    """SDXL's per-frame conditioning (token embeddings and pooled output, as prompt travel makes them) is cut
    to each window: with the batched schedule, windows equal each half sampled alone."""
    frames, half = 8, 4
    animated = host.host_module.apply_motion_model(sdxl.model, sdxl_motion, 1.0, None)
    windowed = host.host_module.set_context_options(
        animated, host.pack.samplers.ContextOptions(context_length=half, overlap=0, schedule="batched"))
    g = torch.Generator().manual_seed(17)
    tokens, pooled = torch.randn(frames, 8, 2048, generator=g), torch.randn(frames, 1280, generator=g)
    negative = [[torch.randn(1, 8, 2048, generator=g), {"pooled_output": torch.randn(1, 1280, generator=g)}]]
    noise = torch.randn(frames, 4, 8, 8, generator=g)

    def run(model, part):
        positive = [[tokens[part], {"pooled_output": pooled[part]}]]
        n = noise[part]
        with torch.inference_mode():
            return host.comfy.sample.sample(model, n, 1, 6.0, "euler", "normal", positive, negative,
                                            torch.zeros_like(n), seed=1, disable_pbar=True)

    in_windows = run(windowed, slice(None))
    alone = torch.cat([run(animated, slice(0, half)), run(animated, slice(half, frames))])
    assert (in_windows - alone).abs().max() <= 1e-4
    # The pooled output matters: the same clip with one pooled vector for all frames differs.
    pooled_one = pooled[:1].expand(frames, -1).clone()
    with torch.inference_mode():
        other = host.comfy.sample.sample(windowed, noise, 1, 6.0, "euler", "normal",
                                         [[tokens, {"pooled_output": pooled_one}]], negative, torch.zeros_like(noise),
                                         seed=1, disable_pbar=True)
    assert (other - in_windows).abs().max() > 1e-4
