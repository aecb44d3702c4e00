"""Keyframed schedules along an animation: prompt travel and per-frame motion scale.

Pure functions, no ComfyUI import. A schedule is a few keyframes ``(frame, value)``; every frame of the
animation gets a blend of the keyframe before it and the keyframe after it. The blend *plan* (which two
keyframes, with which weight) is computed once from the keyframe frames and shared by prompt embeddings
and numeric values, so both kinds of schedule interpolate the same way.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

INTERPOLATIONS = ("linear", "ease_in_out", "hold")
MOTION_SCALE_SIDES = ("down", "mid", "up")
SIDE_SCALE_RANGE = (0.0, 10.0)

_INTEGER = re.compile(r"[+-]?\d+")


class KeyframeError(ValueError):
    pass


@dataclass(frozen=True)
class PromptKeyframe:
    frame: int
    text: str
    line: int  # 1-based line of the schedule text it came from, for messages about it later


def _unquote(part: str) -> str:
    """``"40"`` -> ``40``: people paste A1111/FizzNodes-style ``"0": "text",`` lines. Only a pair of
    quotes enclosing the whole part is removed; ``"big" and "small"`` (quotes inside a prompt) stays."""
    part = part.strip()
    if len(part) >= 2 and part[0] == part[-1] and part[0] in "\"'" and part[0] not in part[1:-1]:
        part = part[1:-1].strip()
    return part


def _check_frames(frames) -> None:
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise KeyframeError(f"the animation must have at least 1 frame, got {frames!r}")


def _parse_frame(raw: str, frames: int) -> tuple[int | None, str | None]:
    """(frame, None) or (None, what is wrong with it)."""
    part = _unquote(raw)
    if not _INTEGER.fullmatch(part):
        return None, f"frame {part!r} is not a whole number (expected e.g. 0, 16, 24)"
    frame = int(part)
    if frame < 0:
        return None, f"frame {frame} is negative; frames count from 0"
    if frame >= frames:
        return None, f"keyframe {frame} is past the last frame ({frames - 1}) of a {frames}-frame animation"
    return frame, None


def parse_prompt_keyframes(text: str, frames: int) -> tuple[PromptKeyframe, ...]:
    """Prompt keyframes from lines ``FRAME: TEXT``, sorted by frame.

    FRAME is a whole number from 0 to ``frames - 1``; TEXT is the prompt from that frame on. Quotes
    around FRAME and/or TEXT and one trailing comma at the end of a line are accepted (``"0": "a sea",``),
    blank lines and lines starting with ``#`` are skipped, and lines may come in any order. Only the first
    colon separates FRAME from TEXT, so the prompt itself may contain colons. If the first keyframe is not
    at frame 0, the frames before it hold the first keyframe's prompt.

    Raises KeyframeError naming the line number and the line's text for a malformed line (no colon, a
    frame that is not a non-negative whole number, empty text), a keyframe at or past ``frames``, a frame
    given twice (naming both lines), and for a text without any keyframe.
    """
    _check_frames(frames)
    keyframes: dict[int, PromptKeyframe] = {}
    for number, raw in enumerate(str(text).splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue

        def fail(problem):
            return KeyframeError(f"line {number}: {problem}. The line reads: {line!r}")

        body = line[:-1].rstrip() if line.endswith(",") else line
        if ":" not in body:
            raise fail("expected 'FRAME: TEXT' (e.g. '0: a calm sea'), but there is no colon")
        frame_part, text_part = body.split(":", 1)
        frame, problem = _parse_frame(frame_part, frames)
        if problem:
            raise fail(problem)
        prompt = _unquote(text_part)
        if not prompt:
            raise fail(f"keyframe {frame} has no prompt text after the colon")
        if frame in keyframes:
            first = keyframes[frame]
            raise fail(f"frame {frame} already has a keyframe on line {first.line} ({first.text!r}); "
                       f"give each frame one prompt")
        keyframes[frame] = PromptKeyframe(frame, prompt, number)
    if not keyframes:
        raise KeyframeError("no keyframes: write one 'FRAME: TEXT' line per keyframe, e.g. '0: a calm sea'")
    return tuple(keyframes[f] for f in sorted(keyframes))


def full_prompt(pre: str, text: str, post: str) -> str:
    """``pre``, ``text`` and ``post`` joined with ", ", leaving out parts that are empty.

    Each part is trimmed of whitespace and of commas at its ends first, so that ``pre = "masterpiece,"``
    gives "masterpiece, a calm sea" rather than "masterpiece,, a calm sea" (a doubled comma is a token of
    its own to the text encoder).
    """
    parts = (p.strip().strip(",").strip() for p in (pre or "", text or "", post or ""))
    return ", ".join(p for p in parts if p)


def _check_interpolation(interpolation: str) -> None:
    if interpolation not in INTERPOLATIONS:
        raise KeyframeError(f"unknown interpolation {interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}")


def frame_blend(keyframe_frames: list[int], frames: int, interpolation: str) -> list[tuple[int, int, float]]:
    """For each of ``frames`` frames: (index of the earlier keyframe, index of the later one, weight t of
    the later one in [0, 1)). The frame's value is ``(1 - t) * earlier + t * later``.

    ``keyframe_frames`` must be strictly increasing frame numbers below ``frames``. Where t is 0 both
    indices are the same keyframe: at a keyframe, before the first one (which frames hold), after the last
    one (which they hold too), and on every frame with "hold". Between keyframes k0 < k1, frame f has
    ``u = (f - k0) / (k1 - k0)`` and t is u ("linear"), the smoothstep ``3u² - 2u³`` ("ease_in_out", which
    starts and ends each transition slowly), or 0 ("hold": a step change at each keyframe).
    """
    _check_frames(frames)
    _check_interpolation(interpolation)
    keys = list(keyframe_frames)
    if not keys:
        raise KeyframeError("no keyframes to blend between")
    for i, k in enumerate(keys):
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < frames:
            raise KeyframeError(f"keyframe {i} is at frame {k!r}; expected a whole number from 0 to {frames - 1} "
                                f"for a {frames}-frame animation")
        if i and k <= keys[i - 1]:
            raise KeyframeError(f"keyframe frames must be strictly increasing, but keyframe {i} (frame {k}) "
                                f"follows keyframe {i - 1} (frame {keys[i - 1]})")
    plan = []
    i = 0  # the keyframe at or before the current frame (or keyframe 0 before it)
    for f in range(frames):
        while i + 1 < len(keys) and keys[i + 1] <= f:
            i += 1
        if f <= keys[i] or i + 1 == len(keys) or interpolation == "hold":
            plan.append((i, i, 0.0))
            continue
        u = (f - keys[i]) / (keys[i + 1] - keys[i])
        t = u if interpolation == "linear" else u * u * (3.0 - 2.0 * u)
        plan.append((i, i + 1, t))
    return plan


def blend_per_frame(embeddings: list[torch.Tensor], plan: list[tuple[int, int, float]]) -> torch.Tensor:
    """One tensor per keyframe, each of shape ``(1, ...)``, blended into ``(len(plan), ...)``.

    Frame ``(a, b, t)`` is ``(1 - t) * embeddings[a] + t * embeddings[b]``, computed in float32 and cast
    back to the input dtype. Where t is 0 (or 1) the frame is a copy of the keyframe's tensor itself, not an
    arithmetic result, so keyframes keep their embeddings bit for bit in any dtype.
    """
    if not embeddings:
        raise KeyframeError("no keyframe embeddings to blend")
    first = embeddings[0]
    for i, e in enumerate(embeddings):
        if not isinstance(e, torch.Tensor) or e.dim() < 1 or e.shape[0] != 1:
            shape = tuple(e.shape) if isinstance(e, torch.Tensor) else type(e).__name__
            raise KeyframeError(f"keyframe embedding {i} has shape {shape}; expected one tensor of shape (1, ...) "
                                f"per keyframe")
        if e.shape != first.shape or e.dtype != first.dtype or e.device != first.device:
            raise KeyframeError(f"keyframe embedding {i} is {tuple(e.shape)} {e.dtype} on {e.device} but embedding 0 "
                                f"is {tuple(first.shape)} {first.dtype} on {first.device}; all keyframes must match "
                                f"(encode every prompt with the same text encoder)")
    if not plan:
        raise KeyframeError("the blend plan is empty (an animation has at least one frame)")
    out = []
    for f, (a, b, t) in enumerate(plan):
        if not (0 <= a < len(embeddings) and 0 <= b < len(embeddings)) or not 0.0 <= t <= 1.0:
            raise KeyframeError(f"blend plan entry for frame {f} is {(a, b, t)}; expected keyframe indices below "
                                f"{len(embeddings)} and a weight in [0, 1]")
        if t == 0.0:
            out.append(embeddings[a][0])
        elif t == 1.0:
            out.append(embeddings[b][0])
        else:
            mixed = (1.0 - t) * embeddings[a][0].float() + t * embeddings[b][0].float()
            out.append(mixed.to(first.dtype))
    return torch.stack(out)


def parse_value_keyframes(text: str, frames: int, lo: float, hi: float) -> tuple[tuple[int, float], ...]:
    """Numeric keyframes ``FRAME: VALUE`` separated by commas or newlines (``"0: 1.0, 16: 0.5"``), sorted.

    Values must be finite numbers in ``[lo, hi]``. Empty entries (a trailing comma, blank lines) are
    skipped and quotes around FRAME or VALUE are accepted. Errors name the entry (its 1-based position
    among the non-empty entries, and its text) and what was expected. An empty text is an error too:
    callers that allow "no schedule" check for it themselves.
    """
    _check_frames(frames)
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise KeyframeError(f"the allowed value range [{lo}, {hi}] must be finite with lo <= hi")
    found: dict[int, tuple[int, float]] = {}  # frame -> (entry number, value)
    entries = [e.strip() for e in re.split(r"[,\n]", str(text))]
    for number, entry in enumerate((e for e in entries if e), start=1):

        def fail(problem):
            return KeyframeError(f"entry {number} ({entry!r}): {problem}")

        if ":" not in entry:
            raise fail("expected 'FRAME: VALUE' (e.g. '0: 1.0', entries separated by commas or new lines)")
        frame_part, value_part = entry.split(":", 1)
        frame, problem = _parse_frame(frame_part, frames)
        if problem:
            raise fail(problem)
        raw = _unquote(value_part)
        try:
            value = float(raw)
        except ValueError:
            raise fail(f"value {raw!r} is not a number (expected e.g. 1.0)") from None
        if not math.isfinite(value):
            raise fail(f"value {raw!r} is not a finite number; give a number from {lo} to {hi}")
        if not lo <= value <= hi:
            raise fail(f"value {value:g} is outside the allowed range [{lo}, {hi}]")
        if frame in found:
            raise fail(f"frame {frame} already has a value in entry {found[frame][0]}; give each frame one value")
        found[frame] = (number, value)
    if not found:
        raise KeyframeError("no keyframes: write 'FRAME: VALUE' entries separated by commas, e.g. '0: 1.0, 16: 0.5'")
    return tuple((f, found[f][1]) for f in sorted(found))


def values_per_frame(keyframes, frames: int, interpolation: str) -> torch.Tensor:
    """``(frame, value)`` keyframes (any order) as one float32 value per frame, shape ``(frames,)``,
    blended with the same plan as prompts (see frame_blend). Keyframe frames hold their values exactly."""
    keys = sorted(((int(f), float(v)) for f, v in keyframes), key=lambda kv: kv[0])
    plan = frame_blend([f for f, _ in keys], frames, interpolation)
    values = [v for _, v in keys]
    # Blended in double precision, then rounded once to float32.
    return torch.tensor([values[a] if t == 0.0 else (1.0 - t) * values[a] + t * values[b] for a, b, t in plan],
                        dtype=torch.float32)


def _is_real(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


@dataclass(frozen=True)
class MotionScaleSchedule:
    """Temporal-layer strength per frame (keyframed), times a multiplier per UNet side.

    ``keyframes`` are ``(frame, scale)`` pairs; they are stored sorted by frame (as tuples, so equal
    schedules compare and hash equal). ``down``, ``mid`` and ``up`` multiply the scale of the motion modules
    in the UNet's down blocks, mid block and up blocks, each in [0, 10].
    """
    keyframes: tuple[tuple[int, float], ...]
    interpolation: str = "linear"
    down: float = 1.0
    mid: float = 1.0
    up: float = 1.0

    def __post_init__(self):
        try:
            pairs = [tuple(kv) for kv in self.keyframes]
        except TypeError:
            raise KeyframeError(f"keyframes must be a sequence of (frame, scale) pairs, got {self.keyframes!r}") from None
        if not pairs:
            raise KeyframeError("a motion scale schedule needs at least one (frame, scale) keyframe")
        seen = set()
        for kv in pairs:
            if len(kv) != 2 or not _is_real(kv[1]) or not isinstance(kv[0], int) or isinstance(kv[0], bool):
                raise KeyframeError(f"keyframe {kv!r} is not a (frame, scale) pair of a whole number and a number")
            frame, scale = kv
            if frame < 0:
                raise KeyframeError(f"keyframe {kv!r} has a negative frame; frames count from 0")
            if not math.isfinite(scale):
                raise KeyframeError(f"keyframe {kv!r} has a scale that is not a finite number")
            if frame in seen:
                raise KeyframeError(f"frame {frame} has more than one keyframe; give each frame one scale")
            seen.add(frame)
        object.__setattr__(self, "keyframes", tuple(sorted((f, float(s)) for f, s in pairs)))
        _check_interpolation(self.interpolation)
        lo, hi = SIDE_SCALE_RANGE
        for side in MOTION_SCALE_SIDES:
            value = getattr(self, side)
            if not _is_real(value) or not math.isfinite(value) or not lo <= value <= hi:
                raise KeyframeError(f"{side} multiplier is {value!r}; expected a finite number from {lo:g} to {hi:g}")
            object.__setattr__(self, side, float(value))

    def frame_scales(self, frames: int) -> torch.Tensor:
        """The keyframed scale of each frame, float32 of shape ``(frames,)`` (side multipliers not applied)."""
        _check_frames(frames)
        last = self.keyframes[-1][0]
        if last >= frames:
            raise KeyframeError(f"the motion scale schedule has a keyframe at frame {last} but the animation has "
                                f"only {frames} frames (0 to {frames - 1}); move or remove that keyframe")
        return values_per_frame(self.keyframes, frames, self.interpolation)

    def side_scale(self, side: str) -> float:
        if side not in MOTION_SCALE_SIDES:
            raise KeyframeError(f"unknown UNet side {side!r}; choose one of {', '.join(MOTION_SCALE_SIDES)}")
        return getattr(self, side)
