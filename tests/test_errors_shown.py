"""What a user reads when a node of this pack fails: the message, after at most a plain builtin type
name (``ValueError: ...``), never the pack's module path (comfy_host/errors.py; how the hosts format
it: docs/comfyui-host.md §5.3). Checked over HTTP on whichever host runs the suite (the default one,
or COMFYUI_DIR's), in the websocket message and in /history."""

from __future__ import annotations

import builtins
import os
import sys
import time

import pytest

from tools.comfy_server import ExecutionFailed


def plain_type(name: str) -> bool:
    return isinstance(getattr(builtins, name, None), type) and issubclass(getattr(builtins, name), BaseException)


# ---------------------------------------------------------------------------------------------
# The conversion, in-process

def test_pack_errors_leave_as_their_builtin_base(host):
    from tools.inprocess_host import PACK_MODULE
    errors = sys.modules[PACK_MODULE + ".comfy_host.errors"]
    original = host.motion_modules.CheckpointError("mm.ckpt: contains no tensors")
    plain = errors.as_builtin(original)
    assert type(plain) is ValueError and str(plain) == "mm.ckpt: contains no tensors"
    assert plain.__cause__ is original
    frame_context = sys.modules[PACK_MODULE + ".motion_modules.unet_layers"].FrameContextError("x")
    assert type(errors.as_builtin(frame_context)) is RuntimeError
    # errors of the host, torch or Python itself pass untouched (the host tells OOM by its type)
    for foreign in (ValueError("v"), KeyError("k"), host.comfy.model_management.InterruptProcessingException()):
        assert errors.as_builtin(foreign) is foreign


def test_node_functions_and_hooks_are_wrapped(host):
    from tools.inprocess_host import PACK_MODULE
    errors = sys.modules[PACK_MODULE + ".comfy_host.errors"]
    for name, node_class in host.pack.NODE_CLASS_MAPPINGS.items():
        assert getattr(getattr(node_class, node_class.FUNCTION), "__plain_errors__", False), name

    class Probe:
        FUNCTION = "run"

        @classmethod
        def run(cls, value):
            raise host.motion_modules.CheckpointError(f"bad {value}")

    errors.plain_node_errors(Probe)
    with pytest.raises(ValueError, match="^bad 3$") as info:
        Probe.run(3)
    assert type(info.value) is ValueError


# ---------------------------------------------------------------------------------------------
# Over HTTP, on the real server

def prompt_with(model_name: str, frames: int) -> dict:
    return {"1": {"class_type": "LoadMotionModule", "inputs": {"model_name": model_name}},
            "2": {"class_type": "ApplyMotionModule", "inputs": {"model": ["3", 0], "motion_model": ["1", 0],
                                                                "motion_scale": 1.0, "beta_schedule": "autoselect"}},
            "3": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny_sd15.safetensors"}},
            "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": frames}},
            "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["3", 1]}},
            "6": {"class_type": "KSampler", "inputs": {"model": ["2", 0], "seed": 1, "steps": 1, "cfg": 1.0,
                                                       "sampler_name": "euler", "scheduler": "normal",
                                                       "positive": ["5", 0], "negative": ["5", 0],
                                                       "latent_image": ["4", 0], "denoise": 1.0}},
            "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["3", 2]}},
            "8": {"class_type": "VideoCombine", "inputs": {"images": ["7", 0], "frame_rate": 8.0, "loop_count": 0,
                                                           "filename_prefix": "errtest", "format": "image/gif",
                                                           "pingpong": False, "save_output": True}}}


def history_error(server, prompt_id: str, timeout: float = 60.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        entry = server.get_json(f"/history/{prompt_id}").get(prompt_id)
        if entry and entry.get("status", {}).get("completed") is not None:
            for kind, data in entry["status"].get("messages", []):
                if kind == "execution_error":
                    return data
            pytest.fail(f"prompt {prompt_id} did not fail: {entry['status']}")
        time.sleep(0.2)
    pytest.fail(f"prompt {prompt_id} did not finish within {timeout:.0f} s")


def assert_reads_well(error: dict, message_start: str):
    shown = f"{error['exception_type']}: {error['exception_message']}"  # as the frontends show it
    assert plain_type(error["exception_type"]), shown
    assert error["exception_message"].startswith(message_start), shown
    assert "motion_modules" not in shown and "comfy_host" not in shown and "animatediff." not in shown.lower(), shown


@pytest.fixture
def broken_module(server):
    name = "broken_motion_module.safetensors"
    path = os.path.join(server.models_dir, "animatediff_models", name)
    with open(path, "wb") as f:
        f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all" + bytes(200))
    yield name
    os.remove(path)


def test_bad_motion_module_file(server, broken_module):
    with pytest.raises(ExecutionFailed) as info:  # the websocket's execution_error
        server.run(prompt_with(broken_module, 2))
    assert_reads_well(info.value.details, broken_module)
    assert f"failed: ValueError: {broken_module}" in str(info.value)
    prompt_id = info.value.details["prompt_id"]
    assert_reads_well(history_error(server, prompt_id), broken_module)  # what /history keeps


@pytest.fixture
def diverged_module(server):
    """The tiny module with one NaN weight: it used to give an all-black video reported as success."""
    from safetensors.torch import load_file, save_file
    tensors = load_file(os.path.join(server.models_dir, "animatediff_models", "tiny_mm_v2.safetensors"))
    key = sorted(k for k in tensors if k.endswith("to_q.weight"))[0]
    tensors[key].view(-1)[0] = float("nan")
    name = "diverged_motion_module.safetensors"
    path = os.path.join(server.models_dir, "animatediff_models", name)
    save_file(tensors, path)
    yield name, key
    os.remove(path)


def test_motion_module_with_nan_weights_is_refused_before_sampling(server, diverged_module):
    name, key = diverged_module
    with pytest.raises(ExecutionFailed) as info:
        server.run(prompt_with(name, 2))
    details = info.value.details
    assert details["node_type"] == "LoadMotionModule"  # refused when loaded, not after sampling
    assert details["exception_type"] == "ValueError"
    message = details["exception_message"]
    assert message.startswith(f"{name}: tensor '{key}' holds 1 NaN value (of "), message
    # the tensor's own name holds "motion_modules": left out of the check for the pack's module path
    assert_reads_well({**details, "exception_message": message.replace(key, "KEY")}, name)


def test_error_raised_inside_the_hosts_sampler(server):
    """The frame limit is found inside the UNet call, under the host's own KSampler node: it leaves
    through the pack's model wrapper as a builtin type too."""
    with pytest.raises(ExecutionFailed) as info:
        server.run(prompt_with("tiny_mm_v2.safetensors", 40))
    details = info.value.details
    assert details["node_type"] == "KSampler"
    assert_reads_well(details, "40 frames reach a motion module")
