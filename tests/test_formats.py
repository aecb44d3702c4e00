"""Every motion-module format users download: detection from keys and shapes, the math each was
trained with, the real manifests, diffusers config.json files, memory use, and bad files."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from motion_modules import (CheckpointError, load_motion_model, motion_model_from_tensors,
                            read_layout, sinusoidal_table)
from motion_modules.formats import (LAYOUT_AD, LAYOUT_DIFFUSERS, LAYOUT_HOTSHOT, expected_keys)
from motion_modules.unet_layers import FrameState, TemporalLayer
from tests.helpers import (SD15_STRUCT_DOWN, SD15_STRUCT_UP, SDXL_STRUCT_DOWN, SDXL_STRUCT_UP, SMALL_DOWN,
                           SMALL_UP, in_layout, manifest_tensors, small_motion_tensors, vector_module_tensors)
from tools.make_tiny_models import motion_module_tensors

# manifest -> (name, version, family, PE length, PE stored, modules, motion GN cross, UNet GN cross, beta label, layout)
MANIFESTS = {
    "animatediff_v1_sd15.json":
        ("AnimateDiff v1", "v1", "SD1.5", 24, True, 20, False, True, "sqrt_linear (AnimateDiff)", LAYOUT_AD),
    "animatediff_v2_sd15.json":
        ("AnimateDiff v2", "v2", "SD1.5", 32, True, 21, False, False, "sqrt_linear (AnimateDiff)", LAYOUT_AD),
    "animatediff_v3_sd15.json":
        ("AnimateDiff v3", "v3", "SD1.5", 32, True, 20, False, False, "sqrt_linear (AnimateDiff)", LAYOUT_AD),
    "animatediff_sdxl_v10_beta.json":
        ("AnimateDiff SDXL beta", "sdxl-beta", "SDXL", 32, True, 15, True, False, "linear (AnimateDiff-SDXL)",
         LAYOUT_AD),
    "hotshot_xl_temporal_layers.json":
        ("HotShot-XL", "hotshot-xl", "SDXL", 24, True, 15, False, True, "linear (SD default)", LAYOUT_HOTSHOT),
    "derived_animatelcm_sd15_t2v.json":
        ("AnimateLCM", "animatelcm", "SD1.5", 64, False, 21, False, False, "lcm", LAYOUT_AD),
    "derived_animatediff_lightning_comfyui.json":
        ("AnimateDiff v2", "v2", "SD1.5", 32, True, 21, False, False, "sqrt_linear (AnimateDiff)", LAYOUT_AD),
    "diffusers_motion_adapter_sd15_default_mid.json":
        ("diffusers MotionAdapter (SD1.5, with mid block)", "diffusers", "SD1.5", 32, True, 21, True, False,
         "sqrt_linear (AnimateDiff)", LAYOUT_DIFFUSERS),
    "diffusers_motion_adapter_sd15_nomid.json":
        ("diffusers MotionAdapter (SD1.5, no mid block)", "diffusers", "SD1.5", 32, True, 20, True, False,
         "sqrt_linear (AnimateDiff)", LAYOUT_DIFFUSERS),
    "diffusers_motion_adapter_sdxl_beta.json":
        ("diffusers MotionAdapter (SDXL, no mid block)", "diffusers", "SDXL", 32, True, 15, True, False,
         "linear (AnimateDiff-SDXL)", LAYOUT_DIFFUSERS),
}
LORA_MANIFESTS = {"derived_v2_motion_lora_rank64.json", "derived_v3_sd15_adapter_lora_rank128.json"}


def load_manifest(reference_data, name):
    return json.load(open(os.path.join(reference_data, "manifests", name)))


def test_every_manifest_is_covered(reference_data):
    names = set(os.listdir(os.path.join(reference_data, "manifests"))) - {"INDEX.json"}
    assert names == set(MANIFESTS) | LORA_MANIFESTS


@pytest.mark.parametrize("manifest", MANIFESTS)
def test_manifest_conformance(reference_data, manifest):
    """The loader accepts exactly the real keys and shapes, names the format, and builds modules whose
    state dict round-trips to the file's keys and shapes."""
    name, version, family, pe_length, pe_stored, count, cross_motion, cross_unet, beta, layout = MANIFESTS[manifest]
    shapes = load_manifest(reference_data, manifest)
    motion = motion_model_from_tensors(manifest_tensors(shapes, torch.float16), source=manifest)
    fmt = motion.format
    assert (fmt.name, fmt.version, fmt.family, fmt.pe_length, fmt.pe_stored, fmt.module_count) == \
        (name, version, family, pe_length, pe_stored, count)
    assert (fmt.cross_frame_motion_norm, fmt.cross_frame_unet_norm) == (cross_motion, cross_unet)
    assert (fmt.beta_schedule.label, fmt.layout, fmt.dtype) == (beta, layout, torch.float16)
    assert fmt.channels() == [320, 640, 1280]
    # Canonical (AnimateDiff-named) state dict of the built modules: every expected key, exact shapes.
    ours = {k: tuple(v.shape) for k, v in motion.modules.state_dict().items()}
    assert ours == expected_keys(fmt)
    # Back under the file's own names: exactly the manifest.
    assert {k: list(v.shape) for k, v in motion.file_state_dict().items()} == shapes
    info = motion.summary()
    for text in (f"format: {name}", f"version: {version}", f"family: {family}", f"modules: {count}",
                 "channels: 320, 640, 1280", f"max frames without context windows: {pe_length}", "dtype: float16",
                 f"motion-module GroupNorm: {'cross-frame' if cross_motion else 'per-frame'}",
                 f"base UNet ResNet GroupNorm: {'cross-frame' if cross_unet else 'per-frame'}"):
        assert text in info


def test_lightning_note_and_animatelcm_pe(reference_data):
    lightning = motion_model_from_tensors(
        manifest_tensors(load_manifest(reference_data, "derived_animatediff_lightning_comfyui.json")), "l.safetensors")
    assert "AnimateDiff-Lightning" in lightning.summary()
    lcm = motion_model_from_tensors(manifest_tensors(load_manifest(reference_data, "derived_animatelcm_sd15_t2v.json")),
                                    "lcm.ckpt")
    assert "positional encoding not stored in the file; computed" in lcm.summary()


@pytest.mark.parametrize("layout", [LAYOUT_HOTSHOT, LAYOUT_DIFFUSERS])
def test_other_layouts_give_the_same_modules(tmp_path, layout):
    """HotShot-XL and diffusers files hold the same weights under other names: loading either gives
    modules equal to the AnimateDiff-named original."""
    ad = motion_module_tensors(SDXL_STRUCT_DOWN, None, SDXL_STRUCT_UP, pe_length=24 if layout == LAYOUT_HOTSHOT
                               else 32, seed=5)
    path = str(tmp_path / "diffusion_pytorch_model.safetensors")
    save_file(in_layout(ad, layout), path)
    motion = load_motion_model(path)
    assert motion.format.layout == layout and motion.format.family == "SDXL"
    loaded = motion.modules.state_dict()
    assert loaded.keys() == ad.keys()
    assert all(torch.equal(loaded[k], ad[k]) for k in ad)


VECTOR_CASES = {
    # layout, structure, expected vector: the GroupNorm each format was trained with
    # (docs/motion-module-formats.md §4.2)
    "v2 (per-frame)": (LAYOUT_AD, SD15_STRUCT_DOWN, 64, SD15_STRUCT_UP, "temporal_block_tiny.safetensors"),
    "v3 (per-frame)": (LAYOUT_AD, SD15_STRUCT_DOWN, None, SD15_STRUCT_UP, "temporal_block_tiny.safetensors"),
    "SDXL beta (cross-frame)": (LAYOUT_AD, SDXL_STRUCT_DOWN, None, SDXL_STRUCT_UP,
                                "temporal_block_tiny_crossframe_gn.safetensors"),
    "HotShot-XL (per-frame)": (LAYOUT_HOTSHOT, SDXL_STRUCT_DOWN, None, SDXL_STRUCT_UP,
                               "temporal_block_tiny.safetensors"),
    "diffusers SD1.5 (cross-frame)": (LAYOUT_DIFFUSERS, SD15_STRUCT_DOWN, 64, SD15_STRUCT_UP,
                                      "temporal_block_tiny_crossframe_gn.safetensors"),
    "diffusers SDXL (cross-frame)": (LAYOUT_DIFFUSERS, SDXL_STRUCT_DOWN, None, SDXL_STRUCT_UP,
                                     "temporal_block_tiny_crossframe_gn.safetensors"),
    "AnimateLCM (per-frame, PE computed)": (LAYOUT_AD, SD15_STRUCT_DOWN, 64, SD15_STRUCT_UP,
                                            "temporal_block_tiny.safetensors"),
}


@pytest.mark.parametrize("case", VECTOR_CASES)
def test_each_format_runs_the_math_it_was_trained_with(reference_data, tmp_path, case):
    """A file of each format whose modules hold the reference vector's weights reproduces the ORIGINAL
    code's output for that format ("as trained" GroupNorm), through the loader and the UNet layer."""
    layout, down, mid, up, vector_name = VECTOR_CASES[case]
    vectors = os.path.join(reference_data, "vectors")
    weights = load_file(os.path.join(vectors, "temporal_block_tiny.safetensors"))
    expected = load_file(os.path.join(vectors, vector_name))
    tensors = vector_module_tensors(weights, down, mid, up, pe="AnimateLCM" not in case)
    if layout == LAYOUT_HOTSHOT:  # HotShot stores 24 positions (docs/motion-module-formats.md §3.5)
        tensors = {k: v[:, :24].contiguous() if k.endswith("pos_encoder.pe") else v for k, v in tensors.items()}
    path = str(tmp_path / "mm.safetensors")
    save_file(in_layout(tensors, layout), path)
    motion = load_motion_model(path)
    fmt = motion.format
    assert fmt.layout == layout
    state = FrameState()
    with torch.no_grad(), state.model_call(2):
        for name, module in (motion.modules.in_unet_order()[0], motion.modules.in_unet_order()[-1]):
            out = TemporalLayer(module, state, 1.0, fmt.groupnorm()[0])(weights["input_bf"])
            assert (out - expected["expected_output_bf"]).abs().max().item() <= 1e-4, name
            # and the other GroupNorm choice really is different
            other = TemporalLayer(module, state, 1.0, not fmt.groupnorm()[0])(weights["input_bf"])
            assert (other - expected["expected_output_bf"]).abs().max().item() > 0.5


def test_animatelcm_computes_64_positions(tmp_path):
    tensors = {k: v for k, v in small_motion_tensors(mid=64).items() if not k.endswith("pos_encoder.pe")}
    path = str(tmp_path / "AnimateLCM_sd15_t2v.ckpt")
    torch.save(tensors, path)
    motion = load_motion_model(path)
    assert (motion.format.version, motion.format.pe_length, motion.format.beta_schedule.sampling) == \
        ("animatelcm", 64, "lcm")
    module = motion.modules.in_unet_order()[0][1]
    pe = module.temporal_transformer.transformer_blocks[0].attention_blocks[1].pos_encoder.pe
    assert pe.shape == (1, 64, 64) and torch.equal(pe, sinusoidal_table(64, 64))
    with torch.no_grad():
        assert module(torch.randn(40, 64, 2, 2), frames=40).shape == (40, 64, 2, 2)


@pytest.mark.parametrize("mid,pe,note", [(None, False, "cannot be told apart"), (None, True, None)])
def test_pe_less_and_long_variants(tmp_path, mid, pe, note):
    tensors = small_motion_tensors(mid=mid, pe_length=64)
    if not pe:
        tensors = {k: v for k, v in tensors.items() if not k.endswith("pos_encoder.pe")}
    fmt = motion_model_from_tensors(tensors, "x.safetensors").format
    if note:
        assert (fmt.version, fmt.pe_length) == ("v3", 32) and note in fmt.summary()
    else:
        assert (fmt.version, fmt.pe_length) == ("v1", 64) and "LongAnimateDiff" in fmt.summary()


# ---- diffusers config.json -------------------------------------------------------------------------

def adapter_dir(tmp_path, config=None, mid=64, pe_length=32):
    folder = tmp_path / "adapter"
    folder.mkdir(exist_ok=True)
    ad = motion_module_tensors(SMALL_DOWN, mid, SMALL_UP, pe_length=pe_length, seed=9, dtype=torch.float16)
    save_file(in_layout(ad, LAYOUT_DIFFUSERS), str(folder / "diffusion_pytorch_model.safetensors"))
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return str(folder / "diffusion_pytorch_model.safetensors")


GOOD_CONFIG = {"_class_name": "MotionAdapter", "_diffusers_version": "0.42.1", "block_out_channels": [64, 64],
               "motion_layers_per_block": 1, "motion_max_seq_length": 32, "motion_mid_block_layers_per_block": 1,
               "motion_norm_num_groups": 32, "motion_num_attention_heads": 8,
               "motion_transformer_layers_per_block": 1, "use_motion_mid_block": True, "conv_in_channels": None}


@pytest.mark.parametrize("config", [None, GOOD_CONFIG])
def test_diffusers_adapter_with_and_without_config(tmp_path, config):
    motion = load_motion_model(adapter_dir(tmp_path, config))
    fmt = motion.format
    assert (fmt.version, fmt.layout, fmt.pe_length, fmt.mid, fmt.dtype) == \
        ("diffusers", LAYOUT_DIFFUSERS, 32, 64, torch.float16)
    assert fmt.cross_frame_motion_norm and not fmt.cross_frame_unet_norm
    assert ("checked against the config.json beside it" in motion.summary()) == (config is not None)


@pytest.mark.parametrize("change,message", [
    ({"block_out_channels": [320, 640]}, r"config.json beside it says block_out_channels = \[320, 640\], but the "
                                         r"weights have \[64, 64\]"),
    ({"use_motion_mid_block": False}, "says use_motion_mid_block = False, but the weights have a mid block"),
    ({"motion_max_seq_length": 64}, "says motion_max_seq_length = 64, but the weights have positional encodings of 32"),
    ({"motion_layers_per_block": 2}, r"motion_layers_per_block = 2, but the weights have \[1, 1\]"),
    ({"motion_num_attention_heads": 16}, "motion_num_attention_heads = 16; only 8"),
    ({"conv_in_channels": 9}, "conv_in_channels = 9; only None"),
    ({"_class_name": "UNet2DConditionModel"}, "describes a 'UNet2DConditionModel', not a MotionAdapter"),
])
def test_diffusers_config_contradicting_weights(tmp_path, change, message):
    with pytest.raises(CheckpointError, match=r"diffusion_pytorch_model.safetensors: .*" + message):
        load_motion_model(adapter_dir(tmp_path, dict(GOOD_CONFIG, **change)))


def test_unreadable_config(tmp_path):
    path = adapter_dir(tmp_path)
    open(os.path.join(os.path.dirname(path), "config.json"), "w").write("{not json")
    with pytest.raises(CheckpointError, match="config.json beside it cannot be read"):
        load_motion_model(path)


# ---- containers, dtypes, memory ---------------------------------------------------------------------

@pytest.mark.parametrize("layout", [LAYOUT_HOTSHOT, LAYOUT_DIFFUSERS])
@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt", ".bin"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_layouts_in_every_container_and_dtype(tmp_path, layout, suffix, dtype):
    ad = motion_module_tensors(SDXL_STRUCT_DOWN, None, SDXL_STRUCT_UP, pe_length=24, seed=4, dtype=dtype)
    tensors = in_layout(ad, layout)
    path = str(tmp_path / f"mm{suffix}")
    if suffix == ".safetensors":
        save_file(tensors, path)
    else:
        torch.save({"state_dict": tensors, "global_step": 10}, path)
    motion = load_motion_model(path)
    assert (motion.format.layout, motion.format.dtype, motion.format.family) == (layout, dtype, "SDXL")
    assert motion.modules_in(dtype) is motion.modules
    f32 = motion.modules_in(torch.float32)
    key = "up_blocks.2.motion_modules.2.temporal_transformer.proj_out.weight"
    assert f32.state_dict()[key].dtype == torch.float32 and torch.equal(f32.state_dict()[key], ad[key].float())


def test_safetensors_read_lazily_and_without_copies(tmp_path):
    """Recognised from the header alone; only motion-module tensors are then read, once, and become
    the module weights without another copy; a cast copy is made once per dtype."""
    tensors = small_motion_tensors(dtype=torch.float16)
    tensors["img_encoder.unrelated.weight"] = torch.zeros(256, 256, dtype=torch.float16)
    path = str(tmp_path / "mm.safetensors")
    save_file(tensors, path)
    layout = read_layout(path)
    assert layout.keys() == tensors.keys() and all(t.is_meta for t in layout.values())
    assert all(layout[k].shape == tensors[k].shape and layout[k].dtype == tensors[k].dtype for k in tensors)
    requested = []

    def loader(keys):
        requested.append(set(keys))
        from motion_modules import read_tensors
        got = read_tensors(path, keys=keys)
        loader.data_ptrs = {k: v.data_ptr() for k, v in got.items()}
        return got

    motion = motion_model_from_tensors(layout, source=path, loader=loader)
    assert len(requested) == 1 and "img_encoder.unrelated.weight" not in requested[0]
    assert requested[0] == set(tensors) - {"img_encoder.unrelated.weight"}
    params = dict(motion.modules.named_parameters())
    assert all(params[k].data_ptr() == loader.data_ptrs[k] for k in params)
    assert "ignored 1 keys outside the motion modules (e.g. 'img_encoder.unrelated.weight')" in motion.summary()
    assert motion.modules_in(torch.float32) is motion.modules_in(torch.float32)
    assert motion.nbytes_in(torch.float32) == 2 * motion.nbytes_in(torch.float16)


def test_mixed_dtypes_cast_once(tmp_path):
    tensors = small_motion_tensors(dtype=torch.float16)
    tensors = {k: v.float() if k.startswith("up_blocks.1") else v for k, v in tensors.items()}
    motion = motion_model_from_tensors(tensors, "mixed.safetensors")
    assert {t.dtype for t in motion.modules.state_dict().values()} == {torch.float16}
    assert "mixed dtypes ['float16', 'float32']" in motion.summary()


# ---- bad input ----------------------------------------------------------------------------------------

def write(tensors, path):
    save_file(tensors, str(path)) if str(path).endswith(".safetensors") else torch.save(tensors, str(path))
    return str(path)


def test_unknown_layout_lists_every_expected_layout(tmp_path):
    path = write({"blocks.0.weight": torch.zeros(3)}, tmp_path / "odd.safetensors")
    with pytest.raises(CheckpointError) as e:
        load_motion_model(path)
    for text in ("odd.safetensors is not a motion module in a known layout",
                 "'down_blocks.0.motion_modules.0.temporal_transformer.norm.weight' (AnimateDiff)",
                 "'down_blocks.0.temporal_attentions.0.norm.weight' (HotShot-XL)",
                 "'down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.to_q.weight' (diffusers MotionAdapter)",
                 "found e.g. 'blocks.0.weight'"):
        assert text in str(e.value)


def test_full_sdxl_checkpoint_given_as_motion_module(tmp_path):
    path = write({"model.diffusion_model.label_emb.0.0.weight": torch.zeros(2, 2),
                  "conditioner.embedders.1.model.ln_final.weight": torch.zeros(2)}, tmp_path / "sdxl.safetensors")
    with pytest.raises(CheckpointError, match="sdxl.safetensors is not a motion module: it is a full Stable "
                                              "Diffusion checkpoint. Load it with the Load Checkpoint node"):
        load_motion_model(path)


def test_diffusers_unet_given_as_motion_module(tmp_path):
    path = write({"conv_in.weight": torch.zeros(2), "down_blocks.0.resnets.0.conv1.weight": torch.zeros(2),
                  "down_blocks.0.attentions.0.proj_in.weight": torch.zeros(2)}, tmp_path / "unet.safetensors")
    with pytest.raises(CheckpointError, match="it is a diffusers UNet"):
        load_motion_model(path)


def test_domain_adapter_manifest_given_as_motion_module(reference_data):
    shapes = load_manifest(reference_data, "derived_v3_sd15_adapter_lora_rank128.json")
    with pytest.raises(CheckpointError, match=r"v3_sd15_adapter.ckpt is not a motion module: it is a spatial LoRA "
                                              r".*Apply it to the MODEL with the host's LoraLoader node"):
        motion_model_from_tensors(manifest_tensors(shapes), "v3_sd15_adapter.ckpt")


def test_motion_lora_manifest_given_as_motion_module(reference_data):
    shapes = load_manifest(reference_data, "derived_v2_motion_lora_rank64.json")
    with pytest.raises(CheckpointError, match="v2_lora_ZoomIn.ckpt is not a motion module: it is a motion LoRA.*"
                                              "Load Motion LoRA node"):
        motion_model_from_tensors(manifest_tensors(shapes), "v2_lora_ZoomIn.ckpt")


@pytest.mark.parametrize("cut", ["data", "header"])
def test_half_written_safetensors(tmp_path, cut):
    path = write(small_motion_tensors(), tmp_path / "mm.safetensors")
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-1000] if cut == "data" else data[:100])
    with pytest.raises(CheckpointError, match=r"mm.safetensors: .*(ends early|truncated).*download it again"):
        load_motion_model(path)


def test_half_written_diffusers_adapter(tmp_path):
    path = adapter_dir(tmp_path, GOOD_CONFIG)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) * 2 // 3])
    with pytest.raises(CheckpointError, match="diffusion_pytorch_model.safetensors: the file ends early"):
        load_motion_model(path)


def test_half_written_ckpt(tmp_path):
    path = write(small_motion_tensors(), tmp_path / "mm_sd_v15_v2.ckpt")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) * 3 // 4])
    with pytest.raises(CheckpointError, match=r"mm_sd_v15_v2.ckpt: .*(ends early|corrupt|truncated).*download"):
        load_motion_model(path)


def test_unsupported_variants_are_named(tmp_path):
    extra = small_motion_tensors()
    extra["down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.1.ff_norm.weight"] = torch.ones(64)
    with pytest.raises(CheckpointError, match="motion-module tensors that AnimateDiff v2 .* does not have "
                                              r"\(first: 'down_blocks.0.motion_modules.0.temporal_transformer."
                                              r"transformer_blocks.1.ff_norm.weight'\)"):
        motion_model_from_tensors(extra, "two_blocks.safetensors")
    pia = dict(small_motion_tensors(mid=None, pe_length=24), **{"conv_in.weight": torch.zeros(320, 9, 3, 3)})
    with pytest.raises(CheckpointError, match="PIA .* 9-channel conv_in"):
        motion_model_from_tensors(pia, "pia.ckpt")


def test_wrong_shape_uses_the_files_own_key_name():
    ad = motion_module_tensors(SDXL_STRUCT_DOWN, None, SDXL_STRUCT_UP, pe_length=24)
    hotshot = in_layout(ad, LAYOUT_HOTSHOT)
    hotshot["up_blocks.0.temporal_attentions.1.proj_in.weight"] = torch.zeros(64, 32)
    with pytest.raises(CheckpointError, match=r"tensor 'up_blocks.0.temporal_attentions.1.proj_in.weight' has "
                                              r"shape \[64, 32\], expected \[64, 64\]"):
        motion_model_from_tensors(hotshot, "hsxl_temporal_layers.safetensors")
    del hotshot["down_blocks.1.temporal_attentions.0.norm.bias"]
    with pytest.raises(CheckpointError, match="missing .* 'down_blocks.1.temporal_attentions.0.norm.bias'"):
        motion_model_from_tensors(hotshot, "hsxl_temporal_layers.safetensors")


def test_groupnorm_choices():
    fmt = motion_model_from_tensors(small_motion_tensors(mid=None, pe_length=24), "v1.ckpt").format
    assert fmt.groupnorm() == fmt.groupnorm("as trained") == (False, True)
    assert fmt.groupnorm("per-frame") == (False, False)
    assert fmt.groupnorm("cross-frame") == (True, False)
    assert fmt.groupnorm("cross-frame incl. UNet ResNets") == (True, True)
    with pytest.raises(ValueError, match="unknown GroupNorm mode 'sideways'; one of: as trained, per-frame"):
        fmt.groupnorm("sideways")

