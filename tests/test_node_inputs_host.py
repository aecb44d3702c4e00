"""Every node of the pack checks its own declared ranges (issue 11), NaN and Infinity included, before
any work: raw API prompts skip the frontend's widgets and the 2024 host checks the ranges of required
inputs only. In-process (the node's FUNCTION and VALIDATE_INPUTS as the host calls them) and over HTTP
(a raw API prompt is rejected when queued, before anything is sampled)."""

from __future__ import annotations

import importlib
import inspect
import math

import pytest


def node(host, name):
    return host.pack.NODE_CLASS_MAPPINGS[name]


def assert_queued(cls, values, change, message):
    """VALIDATE_INPUTS as the hosts call it (only the inputs it names) refuses ``change`` with
    ``message``, unless the host checks that input itself (a required INT or choice)."""
    named = inspect.getfullargspec(cls.VALIDATE_INPUTS).args
    result = cls.VALIDATE_INPUTS(**{k: v for k, v in values.items() if k in named})
    if set(change) <= set(named):
        assert result.startswith(message)
    else:
        spec = {**cls.INPUT_TYPES()["required"]}
        assert result is True and all(spec[k][0] != "FLOAT" for k in change)


SAMPLER_GOOD = dict(seed=1, steps=1, cfg=1.0, sampler_name="euler", scheduler="normal", denoise=1.0,
                    noise_type="default", seed_mode="comfy")


@pytest.mark.parametrize("change,message", [
    ({"freeinit_iterations": 1000}, "Animate Sampler: freeinit_iterations is 1000; expected a whole number from 1 to 10"),
    ({"freeinit_spatial_cutoff": 0.0},
     "Animate Sampler: freeinit_spatial_cutoff is 0.0; expected a finite number from 0.01 to 1"),
    ({"freeinit_temporal_cutoff": math.nan},
     "Animate Sampler: freeinit_temporal_cutoff is nan; expected a finite number from 0.01 to 1"),
    ({"cfg": math.inf}, "Animate Sampler: cfg is inf; expected a finite number from 0 to 100"),
    ({"denoise": -0.5}, "Animate Sampler: denoise is -0.5; expected a finite number from 0 to 1"),
    ({"steps": 0}, "Animate Sampler: steps is 0; expected a whole number from 1 to 10000"),
    ({"seed": -1}, "Animate Sampler: seed is -1; expected a whole number from 0 to 18446744073709551615"),
    ({"freeinit_filter": "box"}, "Animate Sampler: freeinit_filter is 'box'; expected one of "),
])
def test_animate_sampler_refuses_before_sampling(host, monkeypatch, change, message):
    cls = node(host, "AnimateSampler")
    module = importlib.import_module(cls.__module__)
    sampled = []
    monkeypatch.setattr(module.comfy_host, "animate_sample", lambda *a, **k: sampled.append(a))
    values = {**SAMPLER_GOOD, "seed_mode": cls.INPUT_TYPES()["required"]["seed_mode"][0][0], **change}
    with pytest.raises(ValueError) as info:
        cls().sample(model=None, positive=[], negative=[], latent_image={"samples": None}, **values)
    assert str(info.value).startswith(message)
    assert sampled == []
    assert_queued(cls, values, change, message)  # when the prompt is queued


def test_context_scheduler_refuses_its_own_ranges(host):
    cls = node(host, "ContextScheduler")
    values = dict(context_length=0, overlap=4, schedule="standard_static", fuse_method="pyramid", stride=1,
                  closed_loop=False)
    message = "Context Scheduler: context_length is 0; expected a whole number from 1 to 128"
    with pytest.raises(ValueError) as info:
        cls().build(**values)
    assert str(info.value).startswith(message)
    assert_queued(cls, values, {"context_length"}, message)  # a required INT: the host's own check


@pytest.mark.parametrize("name,values,message", [
    ("ApplyMotionModule", dict(model=None, motion_model=None, motion_scale=math.nan, beta_schedule="autoselect"),
     "Apply Motion Module: motion_scale is nan; expected a finite number from 0 to 10 (1.0 = the module as "
     "trained, 0.0 = off)"),
    ("MotionScaleSchedule", dict(keyframes="0: 1.0", interpolation="linear", down=1.0, mid=math.inf, up=1.0),
     "Motion Scale Schedule: mid is inf; expected a finite number from 0 to 10 (multiplier for the UNet's mid "
     "side)"),
])
def test_motion_nodes_check_their_numbers_with_the_shared_check(host, name, values, message):
    """These nodes check every input themselves, with hints (nodes.inputs.check_number)."""
    cls = node(host, name)
    with pytest.raises(ValueError) as info:
        getattr(cls(), cls.FUNCTION)(**values)
    assert str(info.value) == message


@pytest.mark.parametrize("strength", [math.nan, math.inf, 11.0])
def test_motion_lora_strength_is_checked_before_the_file_is_read(host, monkeypatch, strength):
    cls = node(host, "LoadMotionLoRA")
    module = importlib.import_module(cls.__module__)
    read = []
    monkeypatch.setattr(module, "load_motion_lora", lambda path: read.append(path))
    with pytest.raises(ValueError, match=r"^Load Motion LoRA: strength is .*; expected a finite number from -10 to 10"):
        cls().load(motion_model=None, lora_name="any.safetensors", strength=strength)
    assert read == []


# ---------------------------------------------------------------------------------------------
# Over HTTP: raw API prompts

def animation_prompt(**sampler) -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny_sd15.safetensors"}},
        "2": {"class_type": "LoadMotionModule", "inputs": {"model_name": "tiny_mm_v2.safetensors"}},
        "3": {"class_type": "ApplyMotionModule", "inputs": {"model": ["1", 0], "motion_model": ["2", 0],
                                                            "motion_scale": 1.0, "beta_schedule": "autoselect"}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 2}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["1", 1]}},
        "6": {"class_type": "AnimateSampler", "inputs": {
            "model": ["3", 0], "positive": ["5", 0], "negative": ["5", 0], "latent_image": ["4", 0],
            "seed": 1, "steps": 1, "cfg": 1.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
            "noise_type": "default", "seed_mode": "comfy", **sampler}},
        "7": {"class_type": "VideoCombine", "inputs": {"latent": ["6", 0], "vae": ["1", 2], "frame_rate": 8.0,
                                                       "loop_count": 0, "filename_prefix": "ranges",
                                                       "format": "image/gif", "pingpong": False,
                                                       "save_output": True}},
    }


@pytest.mark.parametrize("node_id,change,message", [
    ("6", {"freeinit_iterations": 1000}, "freeinit_iterations is 1000; expected a whole number from 1 to 10"),
    ("6", {"freeinit_iterations": 2, "freeinit_spatial_cutoff": 0.0}, "freeinit_spatial_cutoff is 0.0"),
    ("7", {"frame_rate": math.nan}, "frame_rate is nan; expected a finite number from 0.1 to 240"),
    ("3", {"motion_scale": math.nan}, "motion_scale is nan; expected a finite number from 0 to 10"),
    ("7", {"filename_prefix": "clip\u202e4pm.gif"}, "contains control characters (U+202E"),
])
def test_raw_api_prompts_are_refused_before_sampling(server, node_id, change, message):
    """Rejected when queued; except that the 2024 host validates nodes upstream of required inputs only
    (AnimateSampler feeds VideoCombine's optional latent): there the node itself refuses when it runs,
    before the sampler's first step."""
    from tools.comfy_server import ExecutionFailed, PromptRejected
    prompt = animation_prompt()
    prompt["6"]["inputs"]["seed_mode"] = server_seed_mode(server)
    prompt[node_id]["inputs"].update(change)
    steps = []
    with pytest.raises((PromptRejected, ExecutionFailed)) as info:
        server.run(prompt, on_progress=lambda value, total, node: steps.append(value))
    assert message in str(info.value)
    assert steps == [], "sampling started"
    if isinstance(info.value, ExecutionFailed):
        assert node_id in ("3", "6") and info.value.details["node_id"] == node_id  # behind the optional link
    good = animation_prompt()
    good["6"]["inputs"]["seed_mode"] = server_seed_mode(server)
    outputs = server.run(good)["outputs"]  # and the server still serves
    assert outputs["7"]


def server_seed_mode(server) -> str:
    info = server.get_json("/object_info/AnimateSampler")["AnimateSampler"]
    return info["input"]["required"]["seed_mode"][0][0]
