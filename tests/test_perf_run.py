"""benchmarks/run.py end to end at the smallest settings (a smoke run: it must keep working; its
numbers are not checked, and speed targets live in the benchmark, never in tests)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_run_py_smoke(tmp_path, tiny_models):
    pytest.importorskip("diffusers")
    pytest.importorskip("matplotlib")
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--frames", "2", "--size", "64",
                          "--steps", "1", "--repeats", "1", "--skip-memory", "--skip-load", "--device", "cpu",
                          "--out", str(tmp_path), "--name", "smoke"], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "time/FLOP overhead" in out.stdout and "peer: ours" in out.stdout
    result = json.loads((tmp_path / "smoke.json").read_text())
    speed = result["speed"]
    # one UNet call per step on a CFG batch of 2 clips, in every pipeline
    assert speed["unet_calls_warmup"] == {"plain": [4], "ours": [4], "diffusers": [[2, 4]]}
    assert speed["flop_overhead"] > 1.0
    assert abs(speed["diffusers_flops_over_ours"] - 1.0) < 0.01  # the same network, the same work
    assert (tmp_path / "smoke.png").stat().st_size > 10_000
