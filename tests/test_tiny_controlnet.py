"""The generated tiny ControlNet and T2I-Adapter (tools/make_tiny_models.py) in the active host: its own
loader reads them, its ControlNetApply node applies them, and their residuals reach the tiny SD1.5 UNet
(output changed, no "control could not be applied" or missing-key warning)."""

import logging
import os

import pytest
import torch

CONTROLNET = "tiny_controlnet_sd15.safetensors"
T2I_ADAPTER = "tiny_t2i_adapter_sd15.safetensors"


@pytest.fixture(scope="module")
def control_file(tiny_models):
    def path(name):
        p = os.path.join(tiny_models.controlnet, name)
        if not os.path.exists(p):
            pytest.skip(f"{name} not generated (run scripts/setup.sh)")
        return p
    return path


def one_step(host, model, control, strength, size, frames=8):
    """A 1-step euler sample (cfg 1) of ``frames`` latents of ``size``x``size``, the hint a seeded RGB image
    applied to the positive prompt by the host's ControlNetApply node."""
    latent = torch.zeros(frames, 4, size, size)
    noise = host.comfy.sample.prepare_noise(latent, 1)
    g = torch.Generator().manual_seed(5)
    positive = [[torch.randn(1, 77, 768, generator=g), {}]]
    negative = [[torch.randn(1, 77, 768, generator=g), {}]]
    image = torch.rand(1, size * 8, size * 8, 3, generator=torch.Generator().manual_seed(9))
    positive = host.nodes.ControlNetApply().apply_controlnet(positive, control, image, strength)[0]
    with torch.inference_mode():
        return host.comfy.sample.sample(model, noise, 1, 1.0, "euler", "normal", positive, negative, latent,
                                        seed=1, disable_pbar=True)


def eps_change(host, sd15, control, size):
    """Mean and max |change of eps| at strength 1 versus strength 0 (a 1-step sample is x - sigma_max*eps)."""
    sigma_max = float(sd15.model.model.model_sampling.sigma_max)
    d = (one_step(host, sd15.model, control, 1.0, size) - one_step(host, sd15.model, control, 0.0, size))
    d = d.abs() / sigma_max
    return float(d.mean()), float(d.max())


def warnings_in(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_controlnet_loads_and_changes_the_sample(host, sd15, control_file, caplog):
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        control = host.comfy.controlnet.load_controlnet(control_file(CONTROLNET))
        assert type(control).__name__ == "ControlNet"
        mean, peak = eps_change(host, sd15, control, size=8)
    assert warnings_in(caplog) == []
    # Seeded zero convs: a visible, not explosive, change (about 0.3 mean, 1.3 max on both hosts).
    assert 0.05 < mean < 2 and peak < 10, (mean, peak)


def test_t2i_adapter_loads_and_changes_the_sample(host, sd15, control_file, caplog):
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        control = host.comfy.controlnet.load_controlnet(control_file(T2I_ADAPTER))
        assert type(control).__name__ == "T2IAdapter"
        # Only a 1x1 latent (8x8 hint) fits: see make_tiny_models.t2i_adapter_tensors.
        mean, peak = eps_change(host, sd15, control, size=1)
    assert warnings_in(caplog) == []
    assert 0.05 < mean < 2 and peak < 10, (mean, peak)


def test_t2i_adapter_on_larger_latents_is_skipped_by_the_host(host, sd15, control_file, caplog):
    """The documented limit: on the tiny UNet the adapter's one used feature lands on the downsample block,
    at twice its size, so the host warns and leaves the sample unchanged."""
    control = host.comfy.controlnet.load_controlnet(control_file(T2I_ADAPTER))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        mean, _ = eps_change(host, sd15, control, size=8)
    assert mean == 0
    assert any("control could not be applied" in w for w in warnings_in(caplog))
