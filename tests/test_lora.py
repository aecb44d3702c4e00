"""Motion LoRAs (AnimateDiff v2 MotionLoRA format): exact merge, patch semantics, stacking, the real
rank-64 manifest, bad files; and the v3 domain adapter, which is a spatial LoRA for the host's LoraLoader."""

import json
import logging
import os

import pytest
import torch
from safetensors.torch import save_file

from motion_modules import (CheckpointError, apply_motion_lora, load_motion_lora, load_motion_model,
                            motion_lora_from_tensors, motion_model_from_tensors)
from tests.helpers import (SDXL_STRUCT_DOWN, SDXL_STRUCT_UP, SMALL_DOWN, SMALL_UP, domain_adapter_tensors,
                           manifest_tensors, motion_lora_tensors, small_motion_tensors)

ATTN = "temporal_transformer.transformer_blocks.0.attention_blocks"
Q0 = f"down_blocks.0.motion_modules.0.{ATTN}.0.to_q.weight"
OUT1 = f"up_blocks.1.motion_modules.1.{ATTN}.1.to_out.0.weight"
PAIRS = 7 * 8  # SMALL layout: 2 down + mid + 4 up modules; q, k, v, out of 2 attention blocks each
MID_V = f"mid_block.motion_modules.0.{ATTN}.0.to_v.weight"


def v2_model(dtype=torch.float32):
    return motion_model_from_tensors(small_motion_tensors(dtype=dtype), "mm_v2.safetensors")


def lora(seed=11, mid=64, rank=4, to_out="to_out", name="v2_lora_ZoomIn.ckpt"):
    return motion_lora_from_tensors(motion_lora_tensors(SMALL_DOWN, mid, SMALL_UP, rank=rank, seed=seed,
                                                        to_out=to_out), name)


def run(modules, x, frames=4):
    with torch.no_grad():
        return [m(x, frames) for _, m in modules.in_unet_order()]


def analytic(base: dict, lora_tensors: dict, strength: float) -> dict:
    """W + strength * (up @ down), in fp32, written from the rule of docs/motion-module-formats.md §3.9 (not from our code)."""
    out = dict(base)
    for key, down in lora_tensors.items():
        if not key.endswith(".down.weight"):
            continue
        up = lora_tensors[key.replace(".down.weight", ".up.weight")]
        target = key.replace(".processor.", ".").replace("_lora.down.weight", ".weight")
        target = target.replace(".to_out.weight", ".to_out.0.weight")
        out[target] = (base[target].float() + strength * (up.float() @ down.float())).to(base[target].dtype)
    return out


@pytest.mark.parametrize("strength", [1.0, 0.6, -0.8])
def test_lora_changes_weights_and_outputs_by_exactly_up_down(strength):
    motion = v2_model()
    tensors = motion_lora_tensors(SMALL_DOWN, 64, SMALL_UP, rank=4, seed=11)
    patched = apply_motion_lora(motion, motion_lora_from_tensors(tensors, "zoom.ckpt"), strength)
    base = motion.modules.state_dict()
    want = analytic(base, tensors, strength)
    got = patched.modules_in(torch.float32).state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
    changed = {k for k in want if not torch.equal(want[k], base[k])}
    assert len(changed) == PAIRS  # every module's q, k, v, out, mid included
    assert all(".to_" in k and k.endswith(".weight") for k in changed)
    # Outputs equal those of modules built directly from the analytic weights, and differ from the plain ones.
    reference = motion_model_from_tensors(want, "reference.safetensors")
    x = torch.randn(8, 64, 3, 3)
    ours, ref, plain = run(patched.modules_in(torch.float32), x), run(reference.modules, x), run(motion.modules, x)
    assert all(torch.equal(a, b) for a, b in zip(ours, ref))
    assert all((a - b).abs().max() > 1e-4 for a, b in zip(ours, plain))


def test_strength_zero_is_bit_identical():
    motion = v2_model()
    patched = apply_motion_lora(motion, lora(), 0.0)
    assert patched.modules_in(torch.float32) is motion.modules_in(torch.float32)
    x = torch.randn(8, 64, 3, 3)
    assert all(torch.equal(a, b) for a, b in zip(run(patched.modules_in(torch.float32), x), run(motion.modules, x)))


def test_loaded_module_never_modified_and_clones_share_weights():
    motion = v2_model()
    before = {k: v.clone() for k, v in motion.modules.state_dict().items()}
    patched = apply_motion_lora(motion, lora(), 1.0)
    merged = patched.modules_in(torch.float32)
    assert all(torch.equal(motion.modules.state_dict()[k], before[k]) for k in before)
    assert motion.loras == () and len(patched.loras) == 1
    # Only LoRA-affected weights are fresh tensors; the rest are the loaded ones.
    proj_in = "down_blocks.1.motion_modules.0.temporal_transformer.proj_in.weight"
    assert merged.state_dict()[proj_in].data_ptr() == motion.modules.state_dict()[proj_in].data_ptr()
    assert merged.state_dict()[Q0].data_ptr() != motion.modules.state_dict()[Q0].data_ptr()
    # Built once per dtype and LoRA set; other dtypes get their own merge.
    assert patched.modules_in(torch.float32) is merged
    assert patched.modules_in(torch.float16).state_dict()[Q0].dtype == torch.float16
    assert apply_motion_lora(motion, lora(), 1.0).modules_in(torch.float32) is not merged  # another file load


def test_merge_is_done_in_fp32_from_the_loaded_weights():
    motion = v2_model(torch.float16)
    tensors = motion_lora_tensors(SMALL_DOWN, 64, SMALL_UP, rank=4, seed=2)
    patched = apply_motion_lora(motion, motion_lora_from_tensors(tensors, "l.safetensors"), 0.7)
    want = analytic(motion.modules.state_dict(), tensors, 0.7)
    got = patched.modules_in(torch.float16).state_dict()
    assert torch.equal(got[Q0], want[Q0]) and got[Q0].dtype == torch.float16


def test_stacked_loras_add_up():
    motion = v2_model()
    a, b = motion_lora_tensors(SMALL_DOWN, 64, SMALL_UP, seed=1), motion_lora_tensors(SMALL_DOWN, 64, SMALL_UP, seed=2)
    both = apply_motion_lora(apply_motion_lora(motion, motion_lora_from_tensors(a, "a.ckpt"), 0.5),
                             motion_lora_from_tensors(b, "b.ckpt"), -1.5)
    w = both.modules_in(torch.float32).state_dict()[OUT1]
    base = motion.modules.state_dict()[OUT1]
    ka = f"up_blocks.1.motion_modules.1.{ATTN}.1.processor.to_out_lora"
    delta = 0.5 * (a[ka + ".up.weight"] @ a[ka + ".down.weight"]) - 1.5 * (b[ka + ".up.weight"] @ b[ka + ".down.weight"])
    assert torch.allclose(w, base + delta, atol=1e-6)
    info = both.summary()
    assert "motion LoRA: a.ckpt (strength 0.5, rank 4, 56 layers)" in info
    assert "motion LoRA: b.ckpt (strength -1.5, rank 4, 56 layers)" in info


@pytest.mark.parametrize("spelling", ["to_out", "to_out.0"])
def test_to_out_naming_variants(spelling):
    motion = v2_model()
    tensors = motion_lora_tensors(SMALL_DOWN, 64, SMALL_UP, seed=3, to_out=spelling)
    loaded = motion_lora_from_tensors(tensors, "l.ckpt")
    assert OUT1 in loaded.pairs and len(loaded.pairs) == PAIRS
    w = apply_motion_lora(motion, loaded, 1.0).modules_in(torch.float32).state_dict()[OUT1]
    assert torch.equal(w, analytic(motion.modules.state_dict(), tensors, 1.0)[OUT1])


def test_rank_read_from_tensors():
    assert lora(rank=16).ranks == [16]
    assert "rank 16" in apply_motion_lora(v2_model(), lora(rank=16), 1.0).summary()


def test_mid_block_entries_skipped_with_note_and_v3_warning(caplog):
    v3 = motion_model_from_tensors(small_motion_tensors(mid=None, pe_length=32), "v3_sd15_mm.ckpt")
    assert v3.format.version == "v3"
    with caplog.at_level(logging.WARNING, logger="animatediff"):
        patched = apply_motion_lora(v3, lora(), 1.0)
    info = patched.summary()
    assert "skipped 8 mid-block layers: AnimateDiff v3" in info and "has no mid-block motion module" in info
    assert "trained for AnimateDiff v2; on v3 they have little or no effect" in info
    assert "v2_lora_ZoomIn.ckpt" in caplog.text and "on v3 they have little or no effect" in caplog.text
    merged = patched.modules_in(torch.float32).state_dict()
    assert MID_V not in merged and not torch.equal(merged[Q0], v3.modules.state_dict()[Q0])


def test_v1_warning_without_mid_note(caplog):
    v1 = motion_model_from_tensors(small_motion_tensors(mid=None, pe_length=24), "mm_sd_v15.ckpt")
    patched = apply_motion_lora(v1, lora(mid=None), 1.0)
    assert "on v1 they have little or no effect" in patched.summary()
    assert "mid-block" not in patched.summary()


def test_real_rank64_manifest_on_real_v2_and_v3_layouts(reference_data):
    manifests = os.path.join(reference_data, "manifests")
    shapes = json.load(open(os.path.join(manifests, "derived_v2_motion_lora_rank64.json")))
    loaded = motion_lora_from_tensors(manifest_tensors(shapes, torch.float32), "v2_lora_PanLeft.ckpt")
    assert loaded.ranks == [64] and len(loaded.pairs) == 21 * 8
    v2 = motion_model_from_tensors(manifest_tensors(json.load(open(os.path.join(manifests, "animatediff_v2_sd15.json")))),
                                   "mm_sd_v15_v2.ckpt")
    merged = apply_motion_lora(v2, loaded, 0.8).modules_in(torch.float16).state_dict()  # meta: no memory
    assert merged[MID_V].shape == (1280, 1280) and merged[MID_V].dtype == torch.float16
    v3 = motion_model_from_tensors(manifest_tensors(json.load(open(os.path.join(manifests, "animatediff_v3_sd15.json")))),
                                   "v3_sd15_mm.ckpt")
    assert "skipped 8 mid-block layers" in apply_motion_lora(v3, loaded, 1.0).summary()
    sdxl = motion_model_from_tensors(
        manifest_tensors(json.load(open(os.path.join(manifests, "animatediff_sdxl_v10_beta.json")))),
        "mm_sdxl_v10_beta.ckpt")
    with pytest.raises(CheckpointError, match="v2_lora_PanLeft.ckpt does not fit motion module mm_sdxl_v10_beta.ckpt "
                                              r"\(AnimateDiff SDXL beta, SDXL\): it has layers the module lacks"):
        apply_motion_lora(sdxl, loaded, 1.0)


def test_lora_channels_that_do_not_fit():
    wide = motion_model_from_tensors(
        __import__("tools.make_tiny_models", fromlist=["x"]).motion_module_tensors(
            [[128], [128]], 128, [[128, 128], [128, 128]]), "wide.safetensors")
    with pytest.raises(CheckpointError, match=r"motion LoRA v2_lora_ZoomIn.ckpt does not fit motion module "
                                              r"wide.safetensors .*its channels do not match. '.*' is 128->128 "
                                              r"channels in the module, the LoRA's is 64->64"):
        apply_motion_lora(wide, lora(), 1.0)


def test_lora_for_another_layout():
    sdxl_lora = motion_lora_from_tensors(motion_lora_tensors(SDXL_STRUCT_DOWN, None, SDXL_STRUCT_UP), "xl.ckpt")
    with pytest.raises(CheckpointError, match=r"xl.ckpt does not fit .* it has layers the module lacks "
                                              r"\(e.g. 'down_blocks.0.motion_modules.1."):
        apply_motion_lora(v2_model(), sdxl_lora, 1.0)


def save(tensors, path):
    save_file(tensors, str(path)) if str(path).endswith(".safetensors") else torch.save(tensors, str(path))
    return str(path)


def test_lora_files_load_from_every_container(tmp_path):
    tensors = motion_lora_tensors(SMALL_DOWN, 64, SMALL_UP, seed=5)
    for suffix in (".safetensors", ".ckpt", ".pt"):
        loaded = load_motion_lora(save(tensors, tmp_path / f"l{suffix}"))
        assert len(loaded.pairs) == PAIRS and loaded.ranks == [4]


def test_motion_module_given_as_lora(tmp_path):
    path = save(small_motion_tensors(), tmp_path / "mm_sd_v15_v2.safetensors")
    with pytest.raises(CheckpointError, match="mm_sd_v15_v2.safetensors is not a motion LoRA: it is a motion module, "
                                              "not a motion LoRA. Load it with the Load Motion Module node"):
        load_motion_lora(path)


def test_spatial_loras_given_as_motion_lora(reference_data, tmp_path):
    shapes = json.load(open(os.path.join(reference_data, "manifests", "derived_v3_sd15_adapter_lora_rank128.json")))
    with pytest.raises(CheckpointError, match="v3_sd15_adapter.ckpt is not a motion LoRA: it holds no temporal "
                                              r".*domain adapter.*Apply it to the MODEL with the host's LoraLoader"):
        motion_lora_from_tensors(manifest_tensors(shapes), "v3_sd15_adapter.ckpt")
    kohya = save({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 320)},
                 tmp_path / "style.safetensors")
    with pytest.raises(CheckpointError, match="style.safetensors is not a motion LoRA.*LoraLoader"):
        load_motion_lora(kohya)


def test_unknown_and_broken_lora_files(tmp_path):
    with pytest.raises(CheckpointError, match="x.safetensors is not a motion LoRA: expected keys like "
                                              "'down_blocks.0.motion_modules.0.temporal_transformer"):
        load_motion_lora(save({"a.b": torch.zeros(2)}, tmp_path / "x.safetensors"))
    tensors = motion_lora_tensors(SMALL_DOWN, 64, SMALL_UP)
    del tensors[f"down_blocks.0.motion_modules.0.{ATTN}.1.processor.to_k_lora.up.weight"]
    with pytest.raises(CheckpointError, match=r"to_k_lora.down.weight' has no matching up weight"):
        motion_lora_from_tensors(tensors, "cut.ckpt")
    path = save(motion_lora_tensors(SMALL_DOWN, 64, SMALL_UP), tmp_path / "half.safetensors")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="half.safetensors: .*(truncated|ends early).*download it again"):
        load_motion_lora(path)
    with pytest.raises(CheckpointError, match="motion LoRA file not found"):
        load_motion_lora(str(tmp_path / "nowhere.ckpt"))


def test_domain_adapter_given_to_the_loader_file(tmp_path):
    from tools.make_tiny_models import TINY_UNET
    path = save(domain_adapter_tensors(TINY_UNET), tmp_path / "v3_sd15_adapter.ckpt")
    with pytest.raises(CheckpointError, match="spatial LoRA.*LoraLoader"):
        load_motion_model(path)
    with pytest.raises(CheckpointError, match="spatial LoRA.*LoraLoader"):
        load_motion_lora(path)
