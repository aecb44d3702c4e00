"""Prompt travel through the host's CLIP: every keyframe's prompt encoded once, exactly as the host's
CLIPTextEncode encodes it, then blended into one embedding per frame.

The encoding goes through the CLIP object the way CLIPTextEncode does on the running host, so textual
inversions (``embedding:name``), prompt weights (``(word:1.2)``), CLIP skip (CLIPSetLastLayer), CLIP
LoRAs and, on current ComfyUI, CLIP hook schedules all behave as they do in CLIPTextEncode. The
blending itself is pure (``samplers.keyframes``).
"""

from __future__ import annotations

import logging
import math

import torch

from ..samplers import PromptKeyframe, blend_per_frame, frame_blend, full_prompt

log = logging.getLogger("animatediff")


def encode_text(clip, text: str) -> list:
    """``text`` as the host's CLIPTextEncode encodes it: a CONDITIONING ``[[cond, {options}], ...]``.

    Current ComfyUI's CLIPTextEncode calls ``clip.encode_from_tokens_scheduled(tokens)``, which returns
    the whole conditioning list (one entry, or one per step range when hooks are scheduled on the CLIP)
    with every key the encoder gives (``pooled_output``, and e.g. ``hooks``); the 2024 host's calls
    ``clip.encode_from_tokens(tokens, return_pooled=True)`` and wraps ``pooled_output`` itself. Which one
    exists is detected on the CLIP object, so either host gets CLIPTextEncode's own tensors.
    """
    tokens = clip.tokenize(text)
    scheduled = getattr(clip, "encode_from_tokens_scheduled", None)
    if scheduled is not None:
        return [[cond, dict(options)] for cond, options in scheduled(tokens)]
    cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    return [[cond, {"pooled_output": pooled}]]


def _same_token_length(conds: list[torch.Tensor]) -> list[torch.Tensor]:
    """Token embeddings ``(1, T_i, C)`` brought to one length, the least common multiple of the T_i,
    by repeating each one along the token axis.

    A prompt over 75 tokens encodes to 154 tokens (two CLIP chunks), a short one to 77; embeddings of
    different lengths cannot be blended element by element. Cross-attention over a sequence repeated k
    times gives exactly the same result as over the sequence itself: every key and value appears k times,
    so each softmax weight is split evenly over its k copies and the weighted sum of the values is
    unchanged. ComfyUI itself concatenates conds of different lengths this way (CONDCrossAttn.concat), so
    a keyframe keeps its meaning, and blending two repeated embeddings blends token chunk by token chunk.
    """
    lengths = [c.shape[1] for c in conds]
    target = math.lcm(*lengths)
    return [c if c.shape[1] == target else c.repeat(1, target // c.shape[1], 1) for c in conds]


def _blendable(values) -> bool:
    first = values[0]
    return all(isinstance(v, torch.Tensor) and v.is_floating_point() and v.dim() >= 1 and v.shape[0] == 1
               and v.shape == first.shape and v.dtype == first.dtype and v.device == first.device
               for v in values)


def _blend_entry(entries: list, plan, texts: list[str]) -> list:
    """One conditioning entry per keyframe (``[cond, options]``, each with batch 1) as one entry with
    one embedding per frame."""
    conds = _same_token_length([cond for cond, _ in entries])
    options = [opts for _, opts in entries]
    out = {}
    for key, value in options[0].items():
        values = [opts.get(key) for opts in options]
        if _blendable(values):
            # pooled_output (SDXL's ADM input needs it per frame) and any other per-prompt tensor of batch 1.
            out[key] = blend_per_frame(values, plan)
            continue
        # Anything that is not a tensor of batch 1 of the same shape in every keyframe (hooks, a CLIP
        # schedule's start/end percents, a pooled_output of None, masks of different token lengths) is
        # not blended: the first keyframe's value is kept. Values that are not tensors come from the CLIP
        # object, not from the prompt, and are the same for every keyframe.
        out[key] = value
        if isinstance(value, torch.Tensor) and any(
                not (isinstance(v, torch.Tensor) and v.shape == value.shape and torch.equal(v, value))
                for v in values[1:]):
            log.warning("Prompt Travel: the text encoder's %r differs between keyframes and cannot be blended per "
                        "frame; every frame uses the first keyframe's (%r)", key, texts[0])
    return [blend_per_frame(conds, plan), out]


def encode_prompt_travel(clip, keyframes: tuple[PromptKeyframe, ...], frames: int, pre: str = "", post: str = "",
                         interpolation: str = "linear") -> list:
    """A CONDITIONING with one embedding per frame: ``[[cond (frames, T, C), {"pooled_output": (frames, P),
    ...}], ...]``.

    ``keyframes`` come from ``parse_prompt_keyframes`` (sorted, all below ``frames``). Each keyframe's
    prompt is ``full_prompt(pre, text, post)``; each distinct prompt is encoded exactly once (see
    ``encode_text``), however many keyframes and frames use it. Frames between keyframes blend the two
    keyframes' token embeddings and pooled outputs with ``frame_blend``'s weights; at a keyframe, with
    "hold", and between two keyframes of the same prompt, a frame holds that prompt's tensors bit for bit.
    """
    texts = [full_prompt(pre, k.text, post) for k in keyframes]
    distinct = list(dict.fromkeys(texts))  # each prompt once, in order of first use
    encoded = [encode_text(clip, text) for text in distinct]
    # The blend plan over distinct prompts: between two keyframes with the same prompt a frame holds that
    # prompt's tensors bit for bit ((1 - t) * e + t * e is not always e in floating point).
    which = [distinct.index(text) for text in texts]
    plan = [(which[a], which[b], 0.0 if which[a] == which[b] else t)
            for a, b, t in frame_blend([k.frame for k in keyframes], frames, interpolation)]
    counts = {len(entries) for entries in encoded}
    if len(counts) != 1:
        raise ValueError(f"Prompt Travel: the text encoder gave different numbers of conditioning entries for the "
                         f"keyframes ({sorted(counts)}); a CLIP with scheduled hooks must give every prompt the same "
                         f"schedule")
    return [_blend_entry([entries[i] for entries in encoded], plan, distinct) for i in range(counts.pop())]
