"""Motion LoRAs (AnimateDiff v2 MotionLoRA format, docs/motion-module-formats.md §3.9).

Keys: ``<module>.transformer_blocks.0.attention_blocks.{0,1}.processor.{to_q,to_k,to_v,to_out}_lora.{down,up}.weight``
with ``down [r, C_in]`` and ``up [C_out, r]``; no alpha. ``to_out`` targets ``to_out.0`` (some files
already spell ``to_out.0``). The merge is ``W + strength * (up @ down)`` in fp32, with no rank scaling.

A LoRA is never merged into the loaded motion module: :func:`apply_motion_lora` returns a new
MotionModel that carries it, and the merge happens into fresh copies of the affected weights when the
modules are built for a UNet's dtype (see :class:`motion_modules.model.MotionModel`).
"""

from __future__ import annotations

import itertools
import logging
import os
import re

from .checkpoint import CheckpointError, read_tensors
from .formats import HOTSHOT_KEY, _misfiled_kind, canonical_key_map

log = logging.getLogger("animatediff")

LORA_KEY = re.compile(
    r"^(?P<module>.+)\.processor\.(?P<proj>to_q|to_k|to_v|to_out(?:\.0)?)_lora\.(?P<which>down|up)\.weight$")
_uids = itertools.count(1)


class MotionLoRA:
    """A loaded motion LoRA: ``pairs`` maps a canonical motion-module weight key to ``(up, down)``."""

    def __init__(self, pairs: dict, source: str):
        self.pairs = pairs
        self.source = source
        self.uid = next(_uids)  # identity for the merged-weights cache (never reused, unlike id())

    @property
    def ranks(self) -> list[int]:
        return sorted({int(down.shape[0]) for _, down in self.pairs.values()})

    def rank_text(self) -> str:
        return "/".join(map(str, self.ranks))


def motion_lora_from_tensors(tensors: dict, source: str = "motion LoRA") -> MotionLoRA:
    name = os.path.basename(source)
    halves = {}
    other = []
    for key, t in tensors.items():
        m = LORA_KEY.match(key)
        if not m:
            other.append(key)
            continue
        module = m.group("module")
        if HOTSHOT_KEY.match(module + ".x"):
            module = canonical_key_map([module + ".x"])[1].popitem()[0][:-2]
        proj = "to_out.0" if m.group("proj").startswith("to_out") else m.group("proj")
        halves.setdefault(f"{module}.{proj}.weight", {})[m.group("which")] = (key, t)

    temporal = {k: v for k, v in halves.items() if ".motion_modules." in k and ".temporal_transformer." in k}
    if not temporal:
        if any("lora" in k.lower() and "motion_modules" in k for k in other):
            raise CheckpointError(
                f"{name}: a motion LoRA in an unsupported key format (e.g. '{next(k for k in other if 'lora' in k.lower())}'); "
                f"expected the AnimateDiff v2 MotionLoRA format ('…attention_blocks.0.processor.to_q_lora.down.weight')")
        if halves or any("lora" in k.lower() for k in other):
            raise CheckpointError(
                f"{name} is not a motion LoRA: it holds no temporal (motion_modules) layers; it is a spatial "
                f"LoRA (for example the AnimateDiff v3 domain adapter v3_sd15_adapter.ckpt). Apply it to the "
                f"MODEL with the host's LoraLoader node (put it in models/loras), not as a motion LoRA.")
        kind = _misfiled_kind(other)
        if kind is None and canonical_key_map(other)[1]:
            kind = ("it is a motion module, not a motion LoRA. Load it with the Load Motion Module node "
                    "(models/animatediff_models)")
        raise CheckpointError(
            f"{name} is not a motion LoRA: " + (kind or
            "expected keys like 'down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0."
            f"attention_blocks.0.processor.to_q_lora.down.weight', found e.g. '{next(iter(tensors))}'") + ".")
    spatial = [k for k in halves if k not in temporal]
    if spatial:
        raise CheckpointError(
            f"{name} mixes motion-module LoRA layers with {len(spatial)} spatial ones (e.g. '{spatial[0]}'); "
            f"only motion LoRAs are supported here")

    pairs = {}
    for target, got in temporal.items():
        if set(got) != {"down", "up"}:
            have = next(iter(got.values()))[0]
            raise CheckpointError(f"{name}: '{have}' has no matching {'up' if 'down' in got else 'down'} "
                                  f"weight; the file is incomplete")
        (down_key, down), (up_key, up) = got["down"], got["up"]
        if down.dim() != 2 or up.dim() != 2 or up.shape[1] != down.shape[0]:
            raise CheckpointError(f"{name}: '{up_key}' {list(up.shape)} and '{down_key}' {list(down.shape)} "
                                  f"do not form a LoRA pair (up [out, r] @ down [r, in])")
        pairs[target] = (up, down)
    return MotionLoRA(pairs, source)


def load_motion_lora(path: str) -> MotionLoRA:
    return motion_lora_from_tensors(read_tensors(path, what="motion LoRA"), source=path)


def apply_motion_lora(motion, lora: MotionLoRA, strength: float):
    """A new MotionModel carrying ``lora`` at ``strength``; ``motion`` is not changed. Raises
    CheckpointError when the LoRA does not fit the module."""
    fmt = motion.format
    name = os.path.basename(lora.source)
    weights = motion.modules.state_dict()
    notes = []
    mid = [k for k in lora.pairs if k.startswith("mid_block.")]
    if mid and not fmt.mid:
        notes.append(f"skipped {len(mid)} mid-block layers: {fmt.name} has no mid-block motion module")
    missing = [k for k in lora.pairs if k not in weights and not (k in mid and not fmt.mid)]
    if missing:
        raise CheckpointError(
            f"motion LoRA {name} does not fit motion module {os.path.basename(motion.source)} ({fmt.name}, "
            f"{fmt.family}): it has layers the module lacks (e.g. '{missing[0]}'); it was made for another "
            f"motion-module layout")
    for target, (up, down) in lora.pairs.items():
        if target not in weights:
            continue
        w = weights[target]
        if (up.shape[0], down.shape[1]) != tuple(w.shape):
            raise CheckpointError(
                f"motion LoRA {name} does not fit motion module {os.path.basename(motion.source)} ({fmt.name}, "
                f"{fmt.family}): its channels do not match. '{target}' is {w.shape[1]}->{w.shape[0]} channels "
                f"in the module, the LoRA's is {down.shape[1]}->{up.shape[0]}")
    if fmt.version in ("v1", "v3"):
        notes.append(f"motion LoRAs were trained for AnimateDiff v2; on {fmt.version} they have little or no effect")
    for n in notes:
        log.warning("motion LoRA %s: %s", name, n)
    return motion.with_lora(lora, strength, notes)
