"""Shared fixtures.

Three levels of test:
* pure tests import ``motion_modules``, ``video``, ``samplers`` and ``tools`` directly (no host);
* in-process host tests (fixture ``host``) import ComfyUI into the test process and load this pack
  into it as a package, the way ComfyUI does;
* end-to-end tests (fixture ``server``) start a real ComfyUI server on a loopback port.

Each test is marked by the level it needs (from the fixtures it uses): ``pure``, ``host``, ``e2e`` or
``browser``; ``pytest -m pure`` runs the tests that need no ComfyUI at all.

The host is the one scripts/setup.sh prepared, or the one ``COMFYUI_DIR`` names. Host tests are
skipped only when no host is present at all.
"""

from __future__ import annotations

import os
import sys
import types

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")  # reference vectors and manifests (tests/data/README.md)
MODELS = os.path.join(ROOT, ".cache", "models")
sys.path.insert(0, ROOT)


def host_dir() -> str | None:
    if os.environ.get("COMFYUI_DIR"):
        return os.path.abspath(os.environ["COMFYUI_DIR"])
    try:
        with open(os.path.join(ROOT, ".cache", "host-dir")) as f:
            path = f.read().strip()
    except OSError:
        return None
    return path if os.path.isfile(os.path.join(path, "main.py")) else None


LEVELS = (("browser", {"browser", "frontend"}), ("e2e", {"server"}), ("host", {"host"}))


def pytest_collection_modifyitems(config, items):
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        level = next((name for name, needs in LEVELS if fixtures & needs), "pure")
        item.add_marker(getattr(pytest.mark, level))


@pytest.fixture(scope="session")
def reference_data():
    """tests/data: outputs of the original AnimateDiff code (vectors/) and the published files' key
    manifests (manifests/), part of the repository."""
    return DATA


@pytest.fixture(scope="session")
def tiny_models():
    ckpt = os.path.join(MODELS, "checkpoints", "tiny_sd15.safetensors")
    mm = os.path.join(MODELS, "animatediff_models", "tiny_mm_v2.safetensors")
    if not (os.path.exists(ckpt) and os.path.exists(mm)):
        pytest.skip("tiny models not generated (run scripts/setup.sh)")
    return types.SimpleNamespace(dir=MODELS, checkpoint=ckpt, motion_module=mm,
                                 controlnet=os.path.join(MODELS, "controlnet"))


@pytest.fixture(scope="session")
def host(tiny_models):
    """ComfyUI imported in-process, with this pack loaded into it as ComfyUI loads custom nodes."""
    path = host_dir()
    if path is None:
        pytest.skip("no ComfyUI host (run scripts/setup.sh or set COMFYUI_DIR)")
    from tools.inprocess_host import load_host
    return load_host(path, {"checkpoints": os.path.join(MODELS, "checkpoints"),
                            "animatediff_models": os.path.join(MODELS, "animatediff_models")})


@pytest.fixture(scope="session")
def sd15(host, tiny_models):
    """(model patcher, clip, vae) of the tiny SD1.5 checkpoint, loaded by the host."""
    from tools.inprocess_host import load_checkpoint
    return load_checkpoint(host, tiny_models.checkpoint)


@pytest.fixture(scope="session")
def server(tmp_path_factory, tiny_models):
    """A real ComfyUI server with this pack, on a free loopback port, for the whole session."""
    if host_dir() is None:
        pytest.skip("no ComfyUI host (run scripts/setup.sh or set COMFYUI_DIR)")
    from tools.comfy_server import ComfyServer
    workdir = tmp_path_factory.mktemp("comfy-server")
    # A models folder of the session's own: links to the tiny models; tests may add files to it.
    models = workdir / "models"
    for folder in ("checkpoints", "animatediff_models", "animatediff_motion_lora", "loras", "vae"):
        (models / folder).mkdir(parents=True)
    os.symlink(tiny_models.checkpoint, models / "checkpoints" / "tiny_sd15.safetensors")
    os.symlink(tiny_models.motion_module, models / "animatediff_models" / "tiny_mm_v2.safetensors")
    # ControlNets: the tiny ones where generated, in a folder named by a second extra_model_paths file
    (models / "controlnet").mkdir()
    if os.path.isdir(tiny_models.controlnet):
        for name in sorted(os.listdir(tiny_models.controlnet)):
            os.symlink(os.path.join(tiny_models.controlnet, name), models / "controlnet" / name)
    controlnet_yaml = workdir / "controlnet_model_paths.yaml"
    controlnet_yaml.write_text(f"animatediff_tiny_controlnets:\n    controlnet: {models / 'controlnet'}\n")
    srv = ComfyServer(str(workdir), host_dir=host_dir(), models_dir=str(models),
                      extra_args=["--extra-model-paths-config", str(controlnet_yaml)])
    srv.start()
    yield srv
    srv.stop()
    log_copy = os.path.join(ROOT, "artifacts", "server.log")
    os.makedirs(os.path.dirname(log_copy), exist_ok=True)
    try:
        with open(srv.log_path) as src, open(log_copy, "w") as dst:
            dst.write(src.read())
    except OSError:
        pass
