"""Dtypes: the motion module computes in the UNet's compute dtype through the host's own layer classes
(manual cast, lowvram casting), and fp8-stored motion weights are accepted (cast per call)."""

import os

import pytest
import torch
from safetensors.torch import save_file

from tests.helpers import small_motion_tensors
from tools.make_tiny_models import TINY_MOTION_DOWN, TINY_MOTION_MID, TINY_MOTION_UP, motion_module_tensors

FP8 = getattr(torch, "float8_e4m3fn", None)
needs_fp8 = pytest.mark.skipif(FP8 is None, reason="this torch has no float8_e4m3fn")


def inputs(clips=2, frames=8, channels=64, size=4, seed=1):
    return torch.randn(clips * frames, channels, size, size, generator=torch.Generator().manual_seed(seed))


def run(modules, x, frames=8):
    with torch.inference_mode():
        return [m(x, frames) for _, m in modules.in_unet_order()]


# ---- pure: storage dtype vs compute dtype ------------------------------------------------------

def test_modules_in_keeps_storage_and_compute_apart():
    from motion_modules import motion_model_from_tensors
    from motion_modules.temporal import PositionalEncoding
    motion = motion_model_from_tensors(small_motion_tensors(), "mm.safetensors")
    half = motion.modules_in(torch.float16, torch.float32)
    weights = {k: v for k, v in half.state_dict().items() if not k.endswith("pos_encoder.pe")}
    assert {v.dtype for v in weights.values()} == {torch.float16}
    assert all(m.pe.dtype == torch.float32 for m in half.modules() if isinstance(m, PositionalEncoding))
    assert motion.modules_in(torch.float16, torch.float32) is half
    assert motion.modules_in(torch.float16) is not half  # fp16 compute: another set
    assert motion.nbytes_in(torch.float16, torch.float32) > motion.nbytes_in(torch.float16)


@needs_fp8
@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_fp8_file_loads_as_fp8(tmp_path, suffix):
    tensors = {k: v.to(FP8) for k, v in small_motion_tensors().items()}
    path = str(tmp_path / f"mm_fp8{suffix}")
    save_file(tensors, path) if suffix == ".safetensors" else torch.save(tensors, path)
    from motion_modules import load_motion_model
    motion = load_motion_model(path)
    assert motion.format.dtype == FP8 and "float8_e4m3fn" in motion.summary()
    key = "down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight"
    assert motion.modules.state_dict()[key].dtype == FP8
    assert motion.nbytes_in(FP8, torch.float32) < motion.nbytes_in(torch.float16)


# ---- with the host's layer classes --------------------------------------------------------------

def test_host_manual_cast_matches_cast_weights(host):
    """fp16-stored weights through the host's manual_cast layers (as the pack builds them), computing in
    fp32, give exactly what fp32 weights with the same (fp16-rounded) values give."""
    import comfy.ops
    from motion_modules import motion_model_from_tensors
    cast_ops = host.host_module.unet.MotionCastOperations
    motion = motion_model_from_tensors(small_motion_tensors(dtype=torch.float16), "mm.safetensors")
    manual = motion.modules_in(torch.float16, torch.float32, cast_ops)
    cast_once = motion.modules_in(torch.float32)
    proj_in = manual.in_unet_order()[0][1].temporal_transformer.proj_in
    assert isinstance(proj_in, comfy.ops.manual_cast.Linear) and proj_in.comfy_cast_weights
    x = inputs()
    for a, b in zip(run(manual, x), run(cast_once, x)):
        assert a.dtype == torch.float32 and torch.equal(a, b)


@needs_fp8
def test_fp8_weights_run_on_cpu_with_manual_cast(host, tmp_path):
    tensors = {k: v.to(FP8) for k, v in small_motion_tensors().items()}
    path = str(tmp_path / "mm_fp8.safetensors")
    save_file(tensors, path)
    from motion_modules import load_motion_model, motion_model_from_tensors
    motion = load_motion_model(path)
    fp8 = motion.modules_in(FP8, torch.float32, host.host_module.unet.MotionCastOperations)
    reference = motion_model_from_tensors({k: v.float() for k, v in tensors.items()}, "ref.safetensors")
    x = inputs()
    for a, b in zip(run(fp8, x), run(reference.modules, x)):
        assert torch.isfinite(a).all() and torch.equal(a, b)


# ---- inside the host: every dtype set-up a CPU host offers ---------------------------------------

def sample(host, model, frames=8, steps=2, cfg=7.5, size=8):
    latent = torch.zeros(frames, 4, size, size)
    noise = host.comfy.sample.prepare_noise(latent, 1)
    g = torch.Generator().manual_seed(5)
    positive = [[torch.randn(1, 77, 768, generator=g), {}]]
    negative = [[torch.randn(1, 77, 768, generator=g), {}]]
    with torch.inference_mode():
        return host.comfy.sample.sample(model, noise, steps, cfg, "euler", "normal", positive, negative, latent,
                                        seed=1, disable_pbar=True)


def apply(host, model, motion):
    return host.host_module.apply_motion_model(model, motion, 1.0, motion.format.beta_schedule)


def motion_layers(patched):
    return [v._modules["motion"] for v in patched.object_patches.values()
            if hasattr(v, "_modules") and "motion" in v._modules]


@pytest.fixture(scope="module")
def motion(host, tiny_models):
    return host.motion_modules.load_motion_model(tiny_models.motion_module)


def load_with_flag(host, tiny_models, monkeypatch, flag):
    from tools.inprocess_host import load_checkpoint
    monkeypatch.setattr(host.comfy.cli_args.args, flag, True)
    return load_checkpoint(host, tiny_models.checkpoint).model


def test_motion_layers_are_the_hosts_layer_classes(host, sd15, motion):
    import comfy.ops
    layers = motion_layers(apply(host, sd15.model, motion))
    assert layers
    linears = [m for layer in layers for m in layer.modules() if isinstance(m, torch.nn.Linear)]
    norms = [m for layer in layers for m in layer.modules() if isinstance(m, (torch.nn.LayerNorm, torch.nn.GroupNorm))]
    assert linears and norms
    assert all(isinstance(m, comfy.ops.disable_weight_init.Linear) for m in linears)
    # ... computing through the pack's kernel (motion_modules/kernels.py) unless the host casts per call
    assert all(isinstance(m, host.host_module.unet.MotionOperations.Linear) for m in linears)
    assert all(hasattr(m, "comfy_cast_weights") for m in linears + norms)


def test_lowvram_casting_gives_the_same_animation(host, sd15, motion):
    """Lowvram loading switches every host layer to per-call casting (comfy_cast_weights); ours follow
    and the animation is unchanged."""
    patched = apply(host, sd15.model, motion)
    normal = sample(host, patched)
    layers = [m for layer in motion_layers(patched) for m in layer.modules()]
    switched = [m for m in layers + list(patched.model.diffusion_model.modules())
                if hasattr(m, "comfy_cast_weights") and not m.comfy_cast_weights]
    assert any(m in switched for m in layers)
    try:
        for m in switched:
            m.comfy_cast_weights = True
        lowvram = sample(host, patched)
    finally:
        for m in switched:
            m.comfy_cast_weights = False
    assert torch.equal(normal, lowvram)


def test_fp16_unet_with_manual_cast(host, sd15, motion, tiny_models, monkeypatch):
    """--fp16-unet on the CPU: UNet weights stored in fp16, computing in fp32 by manual cast. The motion
    module computes in fp32 too, and the animation equals the fp32 model's (the file is fp16, so the
    weights have the same values)."""
    model = load_with_flag(host, tiny_models, monkeypatch, "fp16_unet")
    assert model.model.get_dtype() == torch.float16 and model.model.manual_cast_dtype == torch.float32
    assert host.host_module.motion_dtypes(model, motion)[:2] == (torch.float32, torch.float32)
    patched = apply(host, model, motion)
    assert torch.equal(sample(host, patched), sample(host, apply(host, sd15.model, motion)))


@needs_fp8
def test_fp8_unet_stores_motion_weights_in_fp8(host, motion, tiny_models, monkeypatch):
    """--fp8_e4m3fn-unet: the motion weights are stored in fp8 as well and cast per call to fp32."""
    import comfy.ops
    model = load_with_flag(host, tiny_models, monkeypatch, "fp8_e4m3fn_unet")
    assert model.model.get_dtype() == FP8
    storage, compute, ops = host.host_module.motion_dtypes(model, motion)
    assert (storage, compute, ops) == (FP8, torch.float32, host.host_module.unet.MotionCastOperations)
    assert issubclass(ops.Linear, comfy.ops.manual_cast.Linear)
    patched = apply(host, model, motion)
    layer = motion_layers(patched)[0]
    assert layer.motion.temporal_transformer.proj_in.weight.dtype == FP8
    assert patched.model_size() == model.model_size() + motion.nbytes_in(FP8, torch.float32)
    out = sample(host, patched)
    assert out.shape == (8, 4, 8, 8) and torch.isfinite(out).all()


@needs_fp8
def test_fp8_motion_file_in_fp32_unet(host, sd15, tmp_path):
    """An fp8 motion-module file stays fp8 in an fp32 UNet (manual cast per call) and animates exactly
    as an fp32 file holding the same values."""
    tensors = motion_module_tensors(TINY_MOTION_DOWN, TINY_MOTION_MID, TINY_MOTION_UP, dtype=FP8)
    paths = {"fp8": str(tmp_path / "tiny_fp8.safetensors"), "fp32": str(tmp_path / "tiny_fp32.safetensors")}
    save_file(tensors, paths["fp8"])
    save_file({k: v.float() for k, v in tensors.items()}, paths["fp32"])
    fp8 = host.motion_modules.load_motion_model(paths["fp8"])
    fp32 = host.motion_modules.load_motion_model(paths["fp32"])
    assert fp8.format.dtype == FP8
    patched = apply(host, sd15.model, fp8)
    assert motion_layers(patched)[0].motion.temporal_transformer.proj_in.weight.dtype == FP8
    assert torch.equal(sample(host, patched), sample(host, apply(host, sd15.model, fp32)))
    assert os.path.getsize(paths["fp8"]) < os.path.getsize(paths["fp32"]) / 3
