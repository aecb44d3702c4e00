"""Keyframed schedules: prompt travel parsing, blend plans, per-frame embeddings and motion scale."""

import math

import pytest
import torch

from samplers import (INTERPOLATIONS, KeyframeError, MotionScaleSchedule, PromptKeyframe, blend_per_frame,
                      frame_blend, full_prompt, parse_prompt_keyframes, parse_value_keyframes, values_per_frame)


def error_text(fn, *args, **kwargs) -> str:
    with pytest.raises(KeyframeError) as e:
        fn(*args, **kwargs)
    assert isinstance(e.value, ValueError)
    return str(e.value)


# ---- prompt keyframes: parsing -------------------------------------------------------------------

def test_plain_lines():
    got = parse_prompt_keyframes("0: a calm sea\n24: a storm, lightning\n", 32)
    assert got == (PromptKeyframe(0, "a calm sea", 1), PromptKeyframe(24, "a storm, lightning", 2))


def test_quotes_trailing_commas_comments_and_order():
    text = "\n".join([
        "# prompt travel",
        '"40": "sunset",',
        "",
        "   0 :   a calm sea  ",
        "'24': a storm, lightning,",
        '12: "a rising wind"',
        "  # another comment",
    ])
    got = parse_prompt_keyframes(text, 48)
    assert [(k.frame, k.text, k.line) for k in got] == [
        (0, "a calm sea", 4), (12, "a rising wind", 6), (24, "a storm, lightning", 5), (40, "sunset", 2)]


def test_colons_and_inner_quotes_stay_in_the_prompt():
    got = parse_prompt_keyframes('0: style: photo\n8: "big" and "small"\n9: "quoted"', 10)
    assert [k.text for k in got] == ["style: photo", '"big" and "small"', "quoted"]


def test_crlf_line_endings():
    got = parse_prompt_keyframes("0: a\r\n5: b\r\n", 6)
    assert [(k.frame, k.text, k.line) for k in got] == [(0, "a", 1), (5, "b", 2)]


def test_last_frame_is_allowed():
    assert parse_prompt_keyframes("31: end", 32)[0].frame == 31


@pytest.mark.parametrize("line,problem", [
    ("a calm sea", "expected 'FRAME: TEXT' (e.g. '0: a calm sea'), but there is no colon"),
    ("x: a calm sea", "frame 'x' is not a whole number"),
    ("1.5: a calm sea", "frame '1.5' is not a whole number"),
    (": a calm sea", "frame '' is not a whole number"),
    ("-3: a calm sea", "frame -3 is negative; frames count from 0"),
    ("4:", "keyframe 4 has no prompt text after the colon"),
    ('4: ""', "keyframe 4 has no prompt text after the colon"),
    ("4:   ,", "keyframe 4 has no prompt text after the colon"),
])
def test_malformed_line_names_number_and_content(line, problem):
    text = error_text(parse_prompt_keyframes, f"0: first\n\n{line}\n", 32)
    assert text.startswith(f"line 3: {problem}")
    assert text.endswith(f"The line reads: {line!r}")


def test_keyframe_past_the_end():
    text = error_text(parse_prompt_keyframes, '0: a\n# c\n"40": "sunset"', 32)
    assert text.startswith("line 3: keyframe 40 is past the last frame (31) of a 32-frame animation")
    assert "'\"40\": \"sunset\"'" in text
    assert "keyframe 32 is past the last frame (31)" in error_text(parse_prompt_keyframes, "32: x", 32)


def test_duplicate_frame_names_both_lines():
    text = error_text(parse_prompt_keyframes, "0: a\n24: a storm\n8: b\n\n24: sunset", 32)
    assert text.startswith("line 5: frame 24 already has a keyframe on line 2 ('a storm')")
    assert "'24: sunset'" in text


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n   \n"])
def test_no_keyframes(text):
    assert error_text(parse_prompt_keyframes, text, 16).startswith("no keyframes")


@pytest.mark.parametrize("frames", [0, -1, 2.0, True])
def test_frame_count_checked(frames):
    assert "at least 1 frame" in error_text(parse_prompt_keyframes, "0: a", frames)


@pytest.mark.parametrize("pre,text,post,want", [
    ("masterpiece", "a calm sea", "4k", "masterpiece, a calm sea, 4k"),
    ("", "a calm sea", "", "a calm sea"),
    ("  masterpiece, ", " a calm sea ", " ,4k", "masterpiece, a calm sea, 4k"),
    ("   ", "a calm sea", None, "a calm sea"),
    ("pre", "", "post", "pre, post"),
    ("best, quality", "x", "", "best, quality, x"),  # commas inside a part are kept
])
def test_full_prompt(pre, text, post, want):
    assert full_prompt(pre, text, post) == want


# ---- blend plans -------------------------------------------------------------------------------

def test_interpolations_named():
    assert INTERPOLATIONS == ("linear", "ease_in_out", "hold")


def test_linear_plan():
    assert frame_blend([0, 4], 6, "linear") == [
        (0, 0, 0.0), (0, 1, 0.25), (0, 1, 0.5), (0, 1, 0.75), (1, 1, 0.0), (1, 1, 0.0)]


def test_ease_in_out_plan():
    # smoothstep 3u² - 2u³ at u = 1/4, 1/2, 3/4
    assert frame_blend([0, 4], 6, "ease_in_out") == [
        (0, 0, 0.0), (0, 1, 0.15625), (0, 1, 0.5), (0, 1, 0.84375), (1, 1, 0.0), (1, 1, 0.0)]


def test_hold_plan_steps_at_keyframes():
    assert frame_blend([0, 2, 5], 7, "hold") == [
        (0, 0, 0.0), (0, 0, 0.0), (1, 1, 0.0), (1, 1, 0.0), (1, 1, 0.0), (2, 2, 0.0), (2, 2, 0.0)]


def test_frames_before_the_first_keyframe_hold_it():
    plan = frame_blend([2, 5], 7, "linear")
    assert plan[:3] == [(0, 0, 0.0)] * 3
    assert plan[3][:2] == (0, 1) and plan[3][2] == pytest.approx(1 / 3, abs=1e-15)
    assert plan[4][:2] == (0, 1) and plan[4][2] == pytest.approx(2 / 3, abs=1e-15)
    assert plan[5:] == [(1, 1, 0.0)] * 2


def test_single_keyframe_plan():
    assert frame_blend([3], 5, "ease_in_out") == [(0, 0, 0.0)] * 5


def test_plan_errors():
    assert "unknown interpolation 'cubic'; choose one of linear, ease_in_out, hold" in \
        error_text(frame_blend, [0], 4, "cubic")
    assert "no keyframes" in error_text(frame_blend, [], 4, "linear")
    assert "keyframe 1 is at frame 4; expected a whole number from 0 to 3 for a 4-frame animation" in \
        error_text(frame_blend, [0, 4], 4, "linear")
    assert "keyframe 1 (frame 2) follows keyframe 0 (frame 2)" in error_text(frame_blend, [2, 2], 4, "linear")
    assert "strictly increasing" in error_text(frame_blend, [3, 1], 4, "linear")


# ---- per-frame embeddings ----------------------------------------------------------------------

def embeddings(count, dtype=torch.float32, shape=(5, 6)):
    g = torch.Generator().manual_seed(3)
    return [torch.randn(1, *shape, generator=g).to(dtype) for _ in range(count)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_keyframes_bit_identical_and_midpoints(dtype):
    embs = embeddings(3, dtype)
    plan = frame_blend([0, 4, 6], 9, "linear")
    out = blend_per_frame(embs, plan)
    assert out.shape == (9, 5, 6) and out.dtype == dtype
    for frame, k in ((0, 0), (4, 1), (6, 2), (7, 2), (8, 2)):
        assert torch.equal(out[frame], embs[k][0]), frame
    a, b = embs[0][0].float(), embs[1][0].float()
    assert torch.equal(out[2], ((a + b) / 2).to(dtype))  # t = 0.5 is exact in any dtype
    assert torch.equal(out[1], (0.75 * a + 0.25 * b).to(dtype))
    assert torch.equal(out[5], (0.5 * embs[1][0].float() + 0.5 * embs[2][0].float()).to(dtype))


def test_blend_computes_in_float32_for_half_inputs():
    a, b = embeddings(2, torch.float16)
    t = 1 / 3
    out = blend_per_frame([a, b], [(0, 1, t)])[0]
    assert torch.equal(out, ((1 - t) * a[0].float() + t * b[0].float()).half())
    # fp16 arithmetic op by op rounds twice and differs here, so the check above does tell them apart
    assert not torch.equal(out, (1 - t) * a[0] + t * b[0])


def test_hold_keeps_keyframe_tensors():
    embs = embeddings(2)
    out = blend_per_frame(embs, frame_blend([0, 3], 5, "hold"))
    for frame, k in enumerate([0, 0, 0, 1, 1]):
        assert torch.equal(out[frame], embs[k][0])


def test_weight_one_takes_the_later_tensor():
    embs = embeddings(2, torch.float16)
    assert torch.equal(blend_per_frame(embs, [(0, 1, 1.0)])[0], embs[1][0])


def test_blend_errors():
    embs = embeddings(2)
    assert "no keyframe embeddings" in error_text(blend_per_frame, [], [(0, 0, 0.0)])
    assert "keyframe embedding 1 has shape (2, 5, 6); expected one tensor of shape (1, ...)" in \
        error_text(blend_per_frame, [embs[0], torch.zeros(2, 5, 6)], [(0, 0, 0.0)])
    assert "keyframe embedding 1 is (1, 5, 7) torch.float32 on cpu but embedding 0 is (1, 5, 6)" in \
        error_text(blend_per_frame, [embs[0], torch.zeros(1, 5, 7)], [(0, 0, 0.0)])
    assert "keyframe embedding 1 is (1, 5, 6) torch.float16" in \
        error_text(blend_per_frame, [embs[0], embs[1].half()], [(0, 0, 0.0)])
    assert "plan is empty" in error_text(blend_per_frame, embs, [])
    assert "blend plan entry for frame 1 is (0, 2, 0.5); expected keyframe indices below 2" in \
        error_text(blend_per_frame, embs, [(0, 0, 0.0), (0, 2, 0.5)])
    assert "weight in [0, 1]" in error_text(blend_per_frame, embs, [(0, 1, 1.5)])


# ---- numeric keyframes -------------------------------------------------------------------------

def test_value_keyframes_parsed_and_sorted():
    assert parse_value_keyframes("0: 1.0, 16: 0.5, 31: 1.2", 32, 0.0, 2.0) == ((0, 1.0), (16, 0.5), (31, 1.2))
    assert parse_value_keyframes('16: .5\n"0": "1",\n\n 8 : 1e-1,', 32, 0.0, 2.0) == \
        ((0, 1.0), (8, 0.1), (16, 0.5))


@pytest.mark.parametrize("entry,problem", [
    ("16 0.5", "expected 'FRAME: VALUE' (e.g. '0: 1.0', entries separated by commas or new lines)"),
    ("a: 0.5", "frame 'a' is not a whole number"),
    ("-1: 0.5", "frame -1 is negative"),
    ("32: 0.5", "keyframe 32 is past the last frame (31) of a 32-frame animation"),
    ("16: fast", "value 'fast' is not a number (expected e.g. 1.0)"),
    ("16:", "value '' is not a number"),
    ("16: nan", "value 'nan' is not a finite number; give a number from 0.0 to 2.0"),
    ("16: inf", "value 'inf' is not a finite number"),
    ("16: -Infinity", "value '-Infinity' is not a finite number"),
    ("16: 2.5", "value 2.5 is outside the allowed range [0.0, 2.0]"),
    ("16: -0.1", "value -0.1 is outside the allowed range [0.0, 2.0]"),
])
def test_value_entry_errors(entry, problem):
    text = error_text(parse_value_keyframes, f"0: 1.0,, {entry}", 32, 0.0, 2.0)
    assert text.startswith(f"entry 2 ({entry!r}): {problem}")


def test_value_duplicate_and_empty():
    assert error_text(parse_value_keyframes, "0: 1, 4: 1\n4: 2", 8, 0, 2) == \
        "entry 3 ('4: 2'): frame 4 already has a value in entry 2; give each frame one value"
    for text in ("", " , \n ,"):
        assert error_text(parse_value_keyframes, text, 8, 0, 2).startswith("no keyframes")
    assert "range [2, 1]" in error_text(parse_value_keyframes, "0: 1", 8, 2, 1)
    assert "range [0, inf]" in error_text(parse_value_keyframes, "0: 1", 8, 0, math.inf)


def test_range_bounds_are_inclusive():
    assert parse_value_keyframes("0: 0, 1: 10", 2, 0.0, 10.0) == ((0, 0.0), (1, 10.0))


@pytest.mark.parametrize("interpolation,want", [
    ("linear", [1.0, 0.875, 0.75, 0.625, 0.5, 0.5]),
    ("ease_in_out", [1.0, 0.921875, 0.75, 0.578125, 0.5, 0.5]),
    ("hold", [1.0, 1.0, 1.0, 1.0, 0.5, 0.5]),
])
def test_values_per_frame(interpolation, want):
    got = values_per_frame(((4, 0.5), (0, 1.0)), 6, interpolation)  # any order
    assert got.dtype == torch.float32 and got.shape == (6,)
    assert got.tolist() == want


def test_values_before_first_keyframe_and_exact_keyframes():
    got = values_per_frame(((2, 0.3), (5, 1.1)), 7, "linear")
    assert got[:3].tolist() == [torch.tensor(0.3).item()] * 3
    assert got[5].item() == got[6].item() == torch.tensor(1.1).item()
    assert got[3].item() == pytest.approx(0.3 + 0.8 / 3, abs=1e-7)


# ---- motion scale schedule ---------------------------------------------------------------------

def test_schedule_frame_scales():
    s = MotionScaleSchedule(((31, 1.2), (0, 1.0), (16, 0.5)))
    assert s.keyframes == ((0, 1.0), (16, 0.5), (31, 1.2))  # stored sorted
    scales = s.frame_scales(32)
    assert scales.dtype == torch.float32 and scales.shape == (32,)
    assert scales[0].item() == 1.0 and scales[8].item() == 0.75 and scales[16].item() == 0.5
    assert scales[31].item() == torch.tensor(1.2).item()
    assert scales[20].item() == pytest.approx(0.5 + 0.7 * 4 / 15, abs=1e-7)
    assert MotionScaleSchedule(((0, 1.0), (16, 0.5)), "hold").frame_scales(20).tolist() == [1.0] * 16 + [0.5] * 4


def test_schedule_normalises_lists_and_compares_equal():
    a = MotionScaleSchedule([[16, 1], (0, 0.5)], down=2)
    b = MotionScaleSchedule(((0, 0.5), (16, 1.0)), down=2.0)
    assert a == b and hash(a) == hash(b)
    assert a.keyframes == ((0, 0.5), (16, 1.0)) and isinstance(a.keyframes[1][1], float)


def test_schedule_side_scales():
    s = MotionScaleSchedule(((0, 1.0),), down=0.5, mid=0.0, up=10)
    assert [s.side_scale(side) for side in ("down", "mid", "up")] == [0.5, 0.0, 10.0]
    assert "unknown UNet side 'middle'; choose one of down, mid, up" in error_text(s.side_scale, "middle")


def test_schedule_keyframe_past_animation():
    s = MotionScaleSchedule(((0, 1.0), (40, 0.5)))
    assert error_text(s.frame_scales, 32).startswith(
        "the motion scale schedule has a keyframe at frame 40 but the animation has only 32 frames (0 to 31)")
    assert s.frame_scales(41).shape == (41,)


@pytest.mark.parametrize("kwargs,message", [
    ({"keyframes": ()}, "needs at least one (frame, scale) keyframe"),
    ({"keyframes": 5}, "keyframes must be a sequence of (frame, scale) pairs, got 5"),
    ({"keyframes": ((0, 1.0, 2.0),)}, "keyframe (0, 1.0, 2.0) is not a (frame, scale) pair"),
    ({"keyframes": ((0.5, 1.0),)}, "keyframe (0.5, 1.0) is not a (frame, scale) pair of a whole number"),
    ({"keyframes": ((0, "1"),)}, "keyframe (0, '1') is not a (frame, scale) pair"),
    ({"keyframes": ((-2, 1.0),)}, "keyframe (-2, 1.0) has a negative frame"),
    ({"keyframes": ((0, math.nan),)}, "keyframe (0, nan) has a scale that is not a finite number"),
    ({"keyframes": ((0, math.inf),)}, "keyframe (0, inf) has a scale that is not a finite number"),
    ({"keyframes": ((3, 1.0), (3, 0.5))}, "frame 3 has more than one keyframe"),
    ({"keyframes": ((0, 1.0),), "interpolation": "cubic"}, "unknown interpolation 'cubic'"),
    ({"keyframes": ((0, 1.0),), "down": -0.1}, "down multiplier is -0.1; expected a finite number from 0 to 10"),
    ({"keyframes": ((0, 1.0),), "mid": 10.5}, "mid multiplier is 10.5; expected a finite number from 0 to 10"),
    ({"keyframes": ((0, 1.0),), "up": math.nan}, "up multiplier is nan"),
    ({"keyframes": ((0, 1.0),), "up": "1"}, "up multiplier is '1'"),
])
def test_schedule_validation(kwargs, message):
    assert message in error_text(MotionScaleSchedule, **kwargs)


def test_schedule_is_frozen():
    s = MotionScaleSchedule(((0, 1.0),))
    with pytest.raises(AttributeError):
        s.down = 2.0
