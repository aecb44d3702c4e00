"""Motion Scale Schedule (motion strength per frame and per UNet side) through Apply Motion Module, inside a
real ComfyUI host (in-process).

Every frame's temporal-layer strength is ``motion_scale x schedule(frame) x side multiplier``. The tests pin
it against results without a schedule (all ones: bit-identical; a constant s: motion_scale s; zero: the
plain image model), check what reaches the layers per frame and per side, and that inside context windows
the schedule follows the frame's index in the whole clip (batched windows equal each half sampled alone
with its part of the schedule). Models: the tiny SD1.5 checkpoint and motion module, 8x8 latents, 1-2 steps.
"""

import dataclasses
import gc
import math

import pytest
import torch

from tests.helpers import sample

PLAIN = "use model's own"  # beta schedule: keeps the checkpoint's, so results compare with the plain model


@pytest.fixture(scope="module")
def motion(host, tiny_models):
    return host.motion_modules.load_motion_model(tiny_models.motion_module)


@pytest.fixture(params=["host", "unet-call fallback"])
def mode(request, host, monkeypatch):
    """'host': the runtime this host gets; 'unet-call fallback': the 2024 host's runtime, forced on current
    ComfyUI (skipped where the host runs it anyway)."""
    capabilities = host.pack.comfy_host.capabilities
    if request.param == "unet-call fallback":
        if not capabilities.HOST.cond_batch_wrapper:
            pytest.skip("this host already runs the UNet-call fallback")
        monkeypatch.setattr(capabilities, "HOST", dataclasses.replace(capabilities.HOST, cond_batch_wrapper=False))
    return request.param


def node(host, name):
    return host.pack.NODE_CLASS_MAPPINGS[name]()


def schedule(host, keyframes="0: 1.0", interpolation="linear", down=1.0, mid=1.0, up=1.0):
    return node(host, "MotionScaleSchedule").build(keyframes, interpolation, down, mid, up)[0]


def animated(host, sd15, motion, scale=1.0, scale_schedule=None, context_options=None, beta=PLAIN):
    return node(host, "ApplyMotionModule").apply(sd15.model, motion, scale, beta, context_options=context_options,
                                                 scale_schedule=scale_schedule)[0]


def context(host, **kw):
    return node(host, "ContextScheduler").build(**{"context_length": 8, "overlap": 2, "schedule": "batched",
                                                   "fuse_method": "flat", "stride": 1, "closed_loop": False,
                                                   **kw})[0]


def max_diff(a, b):
    assert a.shape == b.shape
    return (a - b).abs().max().item()


class ScalesSeen:
    """The scale every motion module is called with (a float, or one per frame of the call), in call order."""

    def __init__(self, motion):
        self.calls = []
        modules = [m for _, m in motion.modules_in(torch.float32).in_unet_order()]
        self.hooks = [m.register_forward_pre_hook(self._hook) for m in modules]

    def _hook(self, module, args):
        x, frames, _, scale = args
        self.calls.append((frames, scale.clone() if isinstance(scale, torch.Tensor) else scale))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self.hooks:
            h.remove()


# ---- the node --------------------------------------------------------------------------------------

def test_node_registered_with_tooltips_and_saved_widget_order_kept(host):
    mappings, names = host.pack.NODE_CLASS_MAPPINGS, host.pack.NODE_DISPLAY_NAME_MAPPINGS
    cls = mappings["MotionScaleSchedule"]
    assert names["MotionScaleSchedule"] == "Motion Scale Schedule" and cls.CATEGORY == "AnimateDiff"
    assert cls.RETURN_TYPES == ("MOTION_SCALE_SCHEDULE",) and cls.DESCRIPTION
    inputs = cls.INPUT_TYPES()["required"]
    assert list(inputs) == ["keyframes", "interpolation", "down", "mid", "up"]
    assert inputs["interpolation"][0] == ["linear", "ease_in_out", "hold"]
    assert inputs["interpolation"][1]["default"] == "linear"
    for side in ("down", "mid", "up"):
        assert inputs[side][0] == "FLOAT"
        assert {k: inputs[side][1][k] for k in ("default", "min", "max", "step")} == {
            "default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01}
    # Apply Motion Module: saved widgets keep their order; the new input is optional and last.
    apply_types = mappings["ApplyMotionModule"].INPUT_TYPES()
    assert list(apply_types["required"]) == ["model", "motion_model", "motion_scale", "beta_schedule"]
    assert list(apply_types["optional"]) == ["groupnorm", "context_options", "scale_schedule"]
    assert apply_types["optional"]["scale_schedule"][0] == "MOTION_SCALE_SCHEDULE"
    # Every input of every node of the pack has a tooltip; every output has one too.
    for name, node_cls in mappings.items():
        types = node_cls.INPUT_TYPES()
        for input_name, spec in {**types.get("required", {}), **types.get("optional", {})}.items():
            assert len(spec) > 1 and spec[1].get("tooltip"), f"{name}.{input_name} has no tooltip"
        assert len(getattr(node_cls, "OUTPUT_TOOLTIPS", ())) == len(node_cls.RETURN_TYPES), name


def test_node_builds_the_schedule(host):
    built = schedule(host, "0: 1.0, 16: 0.6, 31: 1.2", "ease_in_out", down=0.5, mid=0.0, up=2.0)
    assert built == host.pack.samplers.MotionScaleSchedule(((0, 1.0), (16, 0.6), (31, 1.2)), "ease_in_out",
                                                            0.5, 0.0, 2.0)
    hold = schedule(host, "4: 1\n0: 0,", "hold").frame_scales(8)  # any order, new lines, trailing comma
    assert hold.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    linear = schedule(host, "0: 0.2, 7: 1.0").frame_scales(8)
    assert torch.allclose(linear, torch.linspace(0.2, 1.0, 8), atol=1e-6)


# ---- strength against results without a schedule ----------------------------------------------------

def test_all_ones_schedule_is_bit_identical_to_no_schedule(host, sd15, motion):
    plain = sample(host, animated(host, sd15, motion), frames=8)
    ones = sample(host, animated(host, sd15, motion, scale_schedule=schedule(host, "0: 1.0")), frames=8)
    assert torch.equal(ones, plain)


def test_constant_schedule_equals_motion_scale(host, sd15, motion):
    half = sample(host, animated(host, sd15, motion, scale=0.5), frames=8)
    assert max_diff(sample(host, animated(host, sd15, motion, scale_schedule=schedule(host, "0: 0.5")), frames=8),
                    half) <= 1e-5
    # The schedule multiplies motion_scale: 0.25 x 2.0 is motion_scale 0.5.
    assert max_diff(sample(host, animated(host, sd15, motion, scale=0.25, scale_schedule=schedule(host, "0: 2.0")),
                           frames=8), half) <= 1e-5
    assert max_diff(half, sample(host, animated(host, sd15, motion), frames=8)) > 1e-3  # 0.5 is not 1.0


def test_zero_schedule_is_the_plain_image_model(host, sd15, motion):
    zero = sample(host, animated(host, sd15, motion, scale_schedule=schedule(host, "0: 0, 7: 0")), frames=8)
    assert max_diff(zero, sample(host, sd15.model, frames=8)) <= 1e-5


def test_per_frame_schedule_reaches_each_frame(host, sd15, motion):
    varying = schedule(host, "0: 0.2, 7: 1.0")
    patched = animated(host, sd15, motion, scale=1.5, scale_schedule=varying)
    with ScalesSeen(motion) as seen:
        out = sample(host, patched, frames=8, steps=1)
    assert seen.calls
    want = 1.5 * torch.linspace(0.2, 1.0, 8)
    for frames, scale in seen.calls:
        assert frames == 8 and isinstance(scale, torch.Tensor) and torch.allclose(scale.float().cpu(), want, atol=1e-6)
    # A frame-varying schedule is neither of its constant endpoints.
    for constant in ("0: 0.2", "0: 1.0"):
        other = sample(host, animated(host, sd15, motion, scale=1.5, scale_schedule=schedule(host, constant)),
                       frames=8, steps=1)
        assert max_diff(out, other) > 1e-4, constant


def test_side_multipliers(host, sd15, motion):
    plain = sample(host, sd15.model, frames=8)
    off = animated(host, sd15, motion, scale_schedule=schedule(host, down=0.0, mid=0.0, up=0.0))
    assert max_diff(sample(host, off, frames=8), plain) <= 1e-5
    down_only = animated(host, sd15, motion, scale_schedule=schedule(host, down=1.0, mid=0.0, up=0.0))
    with ScalesSeen(motion) as seen:
        down_out = sample(host, down_only, frames=8)
    ones = sample(host, animated(host, sd15, motion, scale_schedule=schedule(host)), frames=8)
    assert max_diff(down_out, ones) > 1e-4 and max_diff(down_out, plain) > 1e-4
    # Down-block modules get 1 per frame, the mid block's and the up blocks' 0 (7 modules per UNet call).
    sides = [key.split(".")[0] for key, _ in motion.modules_in(torch.float32).in_unet_order()]
    assert len(seen.calls) % len(sides) == 0
    for i, (_, scale) in enumerate(seen.calls):
        want = 1.0 if sides[i % len(sides)] == "down_blocks" else 0.0
        assert torch.equal(scale.float().cpu(), torch.full((8,), want)), (sides[i % len(sides)], scale)


# ---- context windows: frames counted in the whole clip ----------------------------------------------

@pytest.mark.parametrize("window_schedule", ["batched", "standard_static"])
def test_windows_see_the_schedule_of_their_global_frames(host, sd15, motion, mode, window_schedule):
    """20 frames in windows of 8 (overlap 2): every temporal call gets the scales of its window's frames
    in the whole clip."""
    scheduled = schedule(host, "0: 0.2, 10: 2.0, 19: 0.5", mid=0.5)
    patched = animated(host, sd15, motion, scale_schedule=scheduled,
                       context_options=context(host, schedule=window_schedule))
    windows = host.pack.samplers.context_windows(20, 0, host.host_module.animation_of(patched).context)
    assert len(windows) == 3
    per_frame = scheduled.frame_scales(20)
    sides = [key.split(".")[0] for key, _ in motion.modules_in(torch.float32).in_unet_order()]
    with ScalesSeen(motion) as seen:
        out = sample(host, patched, frames=20, steps=1)
    assert out.shape == (20, 4, 8, 8) and torch.isfinite(out).all()
    # One call per window per module (cond and uncond together), windows in order.
    assert len(seen.calls) == len(windows) * len(sides)
    for i, (frames, scale) in enumerate(seen.calls):
        window = windows[i // len(sides)]
        side = 0.5 if sides[i % len(sides)] == "mid_block" else 1.0
        assert frames == len(window)
        assert torch.allclose(scale.float().cpu(), side * per_frame[window], atol=1e-6), (window, scale)


def model_output(host, model, positive, negative, noise):
    """One euler step to sigma 0: the model's CFG-combined prediction for the noised latents."""
    with torch.inference_mode():
        return host.comfy.sample.sample(model, noise, 1, 7.5, "euler", "normal", positive, negative,
                                        torch.zeros_like(noise), seed=1, disable_pbar=True)


def test_batched_windows_equal_each_half_alone_with_its_part_of_the_schedule(host, sd15, motion, mode):
    frames, half = 16, 8
    g = torch.Generator().manual_seed(5)
    positive = [[torch.randn(1, 77, 768, generator=g), {}]]
    negative = [[torch.randn(1, 77, 768, generator=g), {}]]
    noise = torch.randn(frames, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    whole = schedule(host, "0: 0.2, 15: 1.0")
    in_windows = model_output(host, animated(host, sd15, motion, scale_schedule=whole,
                                             context_options=context(host, context_length=half)),
                              positive, negative, noise)
    # Linear from 0.2 at frame 0 to 1.0 at frame 15; each half alone gets the same values at local frames.
    value = [0.2 + 0.8 * f / 15 for f in range(frames)]
    alone = []
    for start in (0, half):
        local = schedule(host, f"0: {value[start]!r}, {half - 1}: {value[start + half - 1]!r}")
        assert torch.allclose(local.frame_scales(half), whole.frame_scales(frames)[start:start + half], atol=1e-6)
        alone.append(model_output(host, animated(host, sd15, motion, scale_schedule=local), positive, negative,
                                  noise[start:start + half]))
    alone = torch.cat(alone)
    assert max_diff(in_windows, alone) <= 1e-4
    # The schedule matters here: a constant one gives something else.
    constant = model_output(host, animated(host, sd15, motion, scale_schedule=schedule(host, "0: 0.6"),
                                           context_options=context(host, context_length=half)),
                            positive, negative, noise)
    assert max_diff(in_windows, constant) > 1e-4


# ---- bad inputs --------------------------------------------------------------------------------------

@pytest.mark.parametrize("keyframes,message", [
    ("0 1.0", r"keyframes: entry 1 \('0 1.0'\): expected 'FRAME: VALUE'"),
    ("0: 1.0, x: 2", r"keyframes: entry 2 \('x: 2'\): frame 'x' is not a whole number"),
    ("0: fast", r"keyframes: entry 1 .*value 'fast' is not a number"),
    ("0: 1, 0: 2", r"keyframes: entry 2 .*frame 0 already has a value in entry 1"),
    ("-1: 1", r"keyframes: entry 1 .*frame -1 is negative"),
    ("", r"keyframes: no keyframes"),
    (" ,\n", r"keyframes: no keyframes"),
    ("0: 10.5", r"keyframes: entry 1 .*value 10.5 is outside the allowed range \[0.0, 10.0\]"),
    ("0: 1, 8: -0.1", r"keyframes: entry 2 .*value -0.1 is outside the allowed range"),
    ("0: nan", r"keyframes: entry 1 .*value 'nan' is not a finite number"),
    ("0: inf", r"keyframes: entry 1 .*value 'inf' is not a finite number"),
    (None, r"keyframes must be text"),
])
def test_bad_keyframes(host, keyframes, message):
    with pytest.raises(ValueError, match=r"^Motion Scale Schedule: " + message):
        schedule(host, keyframes)


@pytest.mark.parametrize("side,value", [("down", math.nan), ("mid", -1.0), ("up", 10.5), ("down", math.inf),
                                        ("up", "1.0"), ("mid", True), ("down", None)])
def test_bad_side_multipliers(host, side, value):
    with pytest.raises(ValueError, match=rf"^Motion Scale Schedule: {side} is .*; expected a finite number from "
                                         rf"0 to 10 \(multiplier for the UNet's {side} side\)"):
        schedule(host, **{side: value})


def test_bad_interpolation(host):
    with pytest.raises(ValueError, match=r"interpolation is 'cubic'; choose one of linear, ease_in_out, hold"):
        schedule(host, interpolation="cubic")


@pytest.mark.parametrize("value", [math.nan, -1.0, 10.01, math.inf, -math.inf, "1.0", None])
def test_bad_motion_scale(host, sd15, motion, value):
    with pytest.raises(ValueError, match=r"^Apply Motion Module: motion_scale is .*; expected a finite number "
                                         r"from 0 to 10"):
        animated(host, sd15, motion, scale=value)


def test_motion_scale_limits_and_integers_still_accepted(host, sd15, motion):
    for value in (0, 0.0, 1, 10.0):
        animated(host, sd15, motion, scale=value)


def test_schedule_input_must_be_a_schedule(host, sd15, motion):
    with pytest.raises(ValueError, match="scale_schedule must come from a Motion Scale Schedule node, got str"):
        animated(host, sd15, motion, scale_schedule="0: 1.0")


def test_keyframe_past_the_end_is_reported_when_sampling(host, sd15, motion):
    late = schedule(host, "0: 1.0, 20: 0.5")
    with pytest.raises(ValueError) as expected:
        late.frame_scales(16)
    message = str(expected.value)
    assert "keyframe at frame 20" in message and "only 16 frames (0 to 15)" in message
    patched = animated(host, sd15, motion, scale_schedule=late)
    unet_calls = []
    hook = sd15.model.model.diffusion_model.register_forward_pre_hook(lambda *a: unet_calls.append(1))
    try:
        # The host's own sampler, and Animate Sampler: the message arrives unchanged, before any UNet work.
        with pytest.raises(ValueError) as got:
            sample(host, patched, frames=16, steps=1)
        assert str(got.value) == message
        latent = {"samples": torch.zeros(16, 4, 8, 8)}
        with pytest.raises(ValueError) as got, torch.inference_mode():
            node(host, "AnimateSampler").sample(
                model=patched, seed=1, steps=1, cfg=7.5, sampler_name="euler", scheduler="normal",
                positive=[[torch.zeros(1, 77, 768), {}]], negative=[[torch.zeros(1, 77, 768), {}]],
                latent_image=latent, denoise=1.0, noise_type="default", seed_mode="one generator for the batch")
        assert str(got.value) == message
    finally:
        hook.remove()
    assert not unet_calls
    # The caught errors' tracebacks hold the host's sampler state (its loaded-model list); free them now, so
    # that the load below replaces that state rather than a later test meeting it as a "memory leak".
    del got
    gc.collect()
    # The same schedule is fine for a clip long enough to hold its keyframes.
    assert torch.isfinite(sample(host, patched, frames=21, steps=1)).all()
