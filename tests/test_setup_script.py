"""scripts/torch_plan.sh: which torch scripts/setup.sh installs, with the driver check and the CPU
wheel index faked (the real pip runs are what `make test` itself goes through)."""

from __future__ import annotations

import os
import platform
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_DRIVER = {"NVIDIA_DRIVER_PROC": "/nonexistent/nvidia/version", "NVIDIA_SMI": "/nonexistent/nvidia-smi"}


def plan(**env):
    result = subprocess.run(["bash", "-c", 'source scripts/torch_plan.sh && torch_plan'], cwd=ROOT, text=True,
                            capture_output=True, timeout=60,
                            env={"PATH": os.environ["PATH"], "TORCH_VERSION": "2.14.1", **env})
    return result.returncode, result.stdout.strip(), result.stderr


def test_driver_present_keeps_the_cuda_build(tmp_path):
    (tmp_path / "version").write_text("NVRM version: 580\n")
    assert plan(NVIDIA_DRIVER_PROC=str(tmp_path / "version"))[1] == "cuda"
    assert plan(**NO_DRIVER, TORCH_VARIANT="cuda")[1] == "cuda"


def test_no_driver_takes_the_cpu_build_when_its_index_answers(tmp_path):
    (tmp_path / "index" / "torch").mkdir(parents=True)
    rc, chosen, said = plan(**NO_DRIVER, TORCH_INDEX_URL=(tmp_path / "index").as_uri())
    if platform.machine() == "x86_64":
        assert (rc, chosen) == (0, "cpu") and "no NVIDIA driver: torch 2.14.1, the CPU-only build" in said
    else:  # PyPI's own build is the CPU one there
        assert (rc, chosen) == (0, "pypi")


def test_no_driver_and_no_cpu_index_falls_back_to_pypi_and_says_so(tmp_path):
    rc, chosen, said = plan(**NO_DRIVER, TORCH_INDEX_URL="http://127.0.0.1:9/whl/cpu")
    assert (rc, chosen) == (0, "pypi")
    if platform.machine() == "x86_64":
        assert "the CPU-only torch index http://127.0.0.1:9/whl/cpu cannot be reached" in said
        assert "TORCH_INDEX_URL" in said


def test_unknown_variant_is_refused():
    rc, _, said = plan(**NO_DRIVER, TORCH_VARIANT="rocm")
    assert rc != 0 and "expected auto, cpu or cuda" in said
