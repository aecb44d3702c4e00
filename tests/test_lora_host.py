"""Motion LoRAs and the v3 domain adapter inside a real ComfyUI host (in-process)."""

import json
import logging
import os

import pytest
import torch
from safetensors.torch import save_file

from tests.helpers import SD15_CONFIG, domain_adapter_tensors, host_nodes, manifest_tensors, motion_lora_tensors
from tests.helpers import sample as sample_frames
from tools.make_tiny_models import TINY_MOTION_DOWN, TINY_MOTION_MID, TINY_MOTION_UP, TINY_UNET


def sample(host, model, frames=6, steps=1, **kw):
    return sample_frames(host, model, frames, steps=steps, **kw)


@pytest.fixture(scope="module")
def lora_folder(host, tmp_path_factory):
    """A user's models/animatediff_motion_lora with two motion LoRAs for the tiny motion module."""
    folder = tmp_path_factory.mktemp("animatediff_motion_lora")
    save_file(motion_lora_tensors(TINY_MOTION_DOWN, TINY_MOTION_MID, TINY_MOTION_UP, rank=8, seed=1, scale=0.2),
              str(folder / "v2_lora_ZoomIn.safetensors"))
    torch.save(motion_lora_tensors(TINY_MOTION_DOWN, TINY_MOTION_MID, TINY_MOTION_UP, rank=4, seed=2, scale=0.2,
                                   to_out="to_out.0"), str(folder / "v2_lora_PanLeft.ckpt"))
    host.folder_paths.add_model_folder_path("animatediff_motion_lora", str(folder))
    yield folder
    forget_folder(host, str(folder), "animatediff_motion_lora")


def forget_folder(host, folder, *names):
    """Leave the host's folder registry as other test modules expect it."""
    for name in names:
        paths = host.folder_paths.folder_names_and_paths[name][0]
        if folder in paths:
            paths.remove(folder)


@pytest.fixture(scope="module")
def motion(host, tiny_models):
    return host.motion_modules.load_motion_model(tiny_models.motion_module)


def test_node_lists_loras_and_takes_negative_strength(host, lora_folder):
    node = host.pack.NODE_CLASS_MAPPINGS["LoadMotionLoRA"]
    assert host.pack.NODE_DISPLAY_NAME_MAPPINGS["LoadMotionLoRA"] == "Load Motion LoRA"
    inputs = node.INPUT_TYPES()["required"]
    assert list(inputs) == ["motion_model", "lora_name", "strength"]
    assert {"v2_lora_ZoomIn.safetensors", "v2_lora_PanLeft.ckpt"} <= set(inputs["lora_name"][0])
    assert inputs["strength"][1]["default"] == 1.0 and inputs["strength"][1]["min"] < 0
    assert node.RETURN_TYPES == ("MOTION_MODEL",)


def test_chained_loras_animate_differently_and_strength_zero_is_exact(host, sd15, motion, lora_folder):
    load = host.pack.NODE_CLASS_MAPPINGS["LoadMotionLoRA"]().load
    apply = host.pack.NODE_CLASS_MAPPINGS["ApplyMotionModule"]().apply
    zoom = load(motion, "v2_lora_ZoomIn.safetensors", 1.0)[0]
    both = load(zoom, "v2_lora_PanLeft.ckpt", -0.7)[0]
    assert [(os.path.basename(lo.source), s) for lo, s, _ in both.loras] == \
        [("v2_lora_ZoomIn.safetensors", 1.0), ("v2_lora_PanLeft.ckpt", -0.7)]
    assert motion.loras == () and len(zoom.loras) == 1  # chaining never changes the input
    plain = sample(host, apply(sd15.model, motion, 1.0, "autoselect")[0])
    with_loras = sample(host, apply(sd15.model, both, 1.0, "autoselect")[0])
    assert (with_loras - plain).abs().max() > 1e-4
    off = load(motion, "v2_lora_ZoomIn.safetensors", 0.0)[0]
    assert torch.equal(sample(host, apply(sd15.model, off, 1.0, "autoselect")[0]), plain)
    # The merged weights the UNet ran are W + s * up @ down; the loaded module is unchanged.
    key = "up_blocks.1.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1.to_v.weight"
    lora = host.motion_modules.load_motion_lora(os.path.join(lora_folder, "v2_lora_ZoomIn.safetensors"))
    up, down = lora.pairs[key]
    assert torch.equal(zoom.modules_in(torch.float32).state_dict()[key],
                       motion.modules.state_dict()[key] + up @ down)


def test_missing_lora_file_named(host, motion, lora_folder):
    with pytest.raises(FileNotFoundError, match="motion LoRA 'gone.ckpt' not found in animatediff_motion_lora"):
        host.pack.NODE_CLASS_MAPPINGS["LoadMotionLoRA"]().load(motion, "gone.ckpt", 1.0)


@pytest.fixture(scope="module")
def adapter_file(host, tmp_path_factory):
    """A v3 domain adapter (spatial LoRA, processor naming) for the tiny SD1.5 UNet, in models/loras and in
    the motion folders, where a user might put it by mistake."""
    folder = tmp_path_factory.mktemp("loras")
    path = str(folder / "v3_sd15_adapter.ckpt")
    torch.save(domain_adapter_tensors(TINY_UNET, rank=8), path)
    host.folder_paths.add_model_folder_path("loras", str(folder))
    host.folder_paths.add_model_folder_path("animatediff_models", str(folder))
    host.folder_paths.add_model_folder_path("animatediff_motion_lora", str(folder))
    yield path
    forget_folder(host, str(folder), "loras", "animatediff_models", "animatediff_motion_lora")


def test_domain_adapter_in_the_motion_nodes_points_to_lora_loader(host, motion, adapter_file):
    mapping = host.pack.NODE_CLASS_MAPPINGS
    with pytest.raises(ValueError, match="v3_sd15_adapter.ckpt is not a motion module: it is a spatial LoRA.*"
                                         "Apply it to the MODEL with the host's LoraLoader node"):
        mapping["LoadMotionModule"]().load("v3_sd15_adapter.ckpt")
    with pytest.raises(ValueError, match="v3_sd15_adapter.ckpt is not a motion LoRA: .*domain adapter.*"
                                         "Apply it to the MODEL with the host's LoraLoader node"):
        mapping["LoadMotionLoRA"]().load(motion, "v3_sd15_adapter.ckpt", 1.0)


def patched_weight(host, patcher, key):
    weight = host.comfy.utils.get_attr(patcher.model, key).detach().clone().float()
    if hasattr(patcher, "calculate_weight"):
        return patcher.calculate_weight(patcher.patches[key], weight, key)
    import comfy.lora
    return comfy.lora.calculate_weight(patcher.patches[key], weight, key)


def test_domain_adapter_works_with_the_hosts_lora_loader(host, sd15, motion, adapter_file, caplog):
    nodes = host_nodes(host)
    tensors = torch.load(adapter_file)
    with caplog.at_level(logging.WARNING):
        model, _ = nodes.LoraLoader().load_lora(sd15.model, sd15.clip, "v3_sd15_adapter.ckpt", 1.0, 1.0)
    assert "NOT LOADED" not in caplog.text
    assert len(model.patches) == len(tensors) // 2 == 7 * 2 * 4  # 7 spatial transformers, attn1/2, q/k/v/out
    # One weight, by hand: W + up @ down (no alpha: scale 1).
    prefix = "up_blocks.1.attentions.1.transformer_blocks.0.attn2.processor.to_k_lora"
    key = "diffusion_model.output_blocks.3.1.transformer_blocks.0.attn2.to_k.weight"
    base = host.comfy.utils.get_attr(sd15.model.model, key).detach().float()
    want = base + tensors[prefix + ".up.weight"] @ tensors[prefix + ".down.weight"]
    assert torch.allclose(patched_weight(host, model, key), want, atol=1e-6)
    # It combines with a motion module on the same MODEL and changes the animation.
    apply = host.pack.NODE_CLASS_MAPPINGS["ApplyMotionModule"]().apply
    plain = sample(host, apply(sd15.model, motion, 1.0, "autoselect")[0], frames=4)
    adapted = sample(host, apply(model, motion, 1.0, "autoselect")[0], frames=4)
    assert (adapted - plain).abs().max() > 1e-4
    assert not sd15.model.patches


def test_real_adapter_manifest_maps_onto_a_real_sd15_unet(host, reference_data):
    """Every one of the 256 tensors of v3_sd15_adapter.ckpt (its manifest) lands on an SD1.5 UNet weight
    of the right shape through the host's own LoRA key map."""
    import comfy.lora
    import comfy.model_base
    import comfy.supported_models
    shapes = json.load(open(os.path.join(reference_data, "manifests", "derived_v3_sd15_adapter_lora_rank128.json")))
    # Our generator follows the same naming: for the real SD1.5 config it writes exactly these keys.
    ours = domain_adapter_tensors(dict(SD15_CONFIG), rank=128)
    assert {k: list(v.shape) for k, v in ours.items()} == shapes
    with torch.device("meta"):
        model = comfy.model_base.BaseModel(comfy.supported_models.SD15(dict(SD15_CONFIG)), device="meta")
    key_map = comfy.lora.model_lora_keys_unet(model, {})
    loaded = comfy.lora.load_lora(manifest_tensors(shapes, torch.float32), key_map)
    assert len(loaded) == 128
    weights = model.state_dict()
    for target, patch in loaded.items():
        # ("lora", (up, down, ...)) on the 2024 host; a LoRAAdapter with .weights on current ComfyUI
        up, down = (patch.weights if hasattr(patch, "weights") else patch[1])[:2]
        assert tuple(weights[target].shape) == (up.shape[0], down.shape[1])
