"""Recognising a motion-module checkpoint from its keys and shapes (never its file name).

See ``shared/spec/motion-module-formats.md`` §2, §3 and §6. The result is a :class:`MotionFormat`,
which says how the modules are laid out and which math each was trained with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from .checkpoint import CheckpointError

AD_KEY = re.compile(r"^(down_blocks|up_blocks)\.(\d+)\.motion_modules\.(\d+)\.temporal_transformer\.(.+)$")
AD_MID_KEY = re.compile(r"^mid_block\.motion_modules\.0\.temporal_transformer\.(.+)$")
NORM_SUFFIX = "norm.weight"
PE_SUFFIX = ".pos_encoder.pe"

SD15_DOWN = [[320, 320], [640, 640], [1280, 1280], [1280, 1280]]
SD15_UP = [[1280] * 3, [1280] * 3, [640] * 3, [320] * 3]
SDXL_DOWN = [[320, 320], [640, 640], [1280, 1280]]
SDXL_UP = [[1280] * 3, [640] * 3, [320] * 3]

# Keys of one module relative to `temporal_transformer.`, without PE (spec §1.1).
MODULE_KEYS_NO_PE = (
    ["norm.weight", "norm.bias", "proj_in.weight", "proj_in.bias", "proj_out.weight", "proj_out.bias",
     "transformer_blocks.0.ff.net.0.proj.weight", "transformer_blocks.0.ff.net.0.proj.bias",
     "transformer_blocks.0.ff.net.2.weight", "transformer_blocks.0.ff.net.2.bias",
     "transformer_blocks.0.ff_norm.weight", "transformer_blocks.0.ff_norm.bias"]
    + [f"transformer_blocks.0.norms.{k}.{p}" for k in (0, 1) for p in ("weight", "bias")]
    + [f"transformer_blocks.0.attention_blocks.{k}.{p}.weight" for k in (0, 1) for p in ("to_q", "to_k", "to_v")]
    + [f"transformer_blocks.0.attention_blocks.{k}.to_out.0.{p}" for k in (0, 1) for p in ("weight", "bias")]
)


@dataclass(frozen=True)
class BetaSchedule:
    """A ComfyUI ``ModelSamplingDiscrete`` schedule: name as ComfyUI spells it, and its beta range."""
    name: str
    linear_start: float
    linear_end: float
    label: str

    def __str__(self):
        return self.label


# ComfyUI "sqrt_linear" is diffusers "linear", which AnimateDiff SD1.5 was trained with (spec §7).
SQRT_LINEAR_AD = BetaSchedule("sqrt_linear", 0.00085, 0.012, "sqrt_linear (AnimateDiff)")
LINEAR_AD_SDXL = BetaSchedule("linear", 0.00085, 0.020, "linear (AnimateDiff-SDXL)")
LINEAR_DEFAULT = BetaSchedule("linear", 0.00085, 0.012, "linear (SD default)")
BETA_SCHEDULES = {s.label: s for s in (SQRT_LINEAR_AD, LINEAR_AD_SDXL, LINEAR_DEFAULT)}


@dataclass
class MotionFormat:
    """What a checkpoint is, and the math it expects."""
    name: str                      # e.g. "AnimateDiff v2"
    version: str                   # "v1" | "v2" | "v3" | "sdxl-beta"
    family: str                    # "SD1.5" | "SDXL" | "custom"
    down: list                     # per level, the channel width of each module
    mid: int | None                # channel width of the mid-block module, if any
    up: list
    pe_length: int                 # max frames without context windows
    pe_stored: bool                # whether the file carries the PE buffers
    cross_frame_motion_norm: bool  # GroupNorm statistics of the motion module span frames
    cross_frame_unet_norm: bool    # the base UNet's ResNet/out GroupNorms span frames (v1)
    beta_schedule: BetaSchedule
    dtype: torch.dtype = torch.float32
    notes: list = field(default_factory=list)

    @property
    def module_count(self) -> int:
        return sum(map(len, self.down)) + (1 if self.mid else 0) + sum(map(len, self.up))

    def channels(self) -> list[int]:
        return sorted({c for lvl in self.down + self.up for c in lvl} | ({self.mid} if self.mid else set()))

    def summary(self) -> str:
        lines = [
            f"format: {self.name}",
            f"family: {self.family}",
            f"modules: {self.module_count} (down {sum(map(len, self.down))}, mid {1 if self.mid else 0}, "
            f"up {sum(map(len, self.up))})",
            f"channels: {', '.join(map(str, self.channels()))}",
            f"max frames without context windows: {self.pe_length}",
            f"dtype: {str(self.dtype).replace('torch.', '')}",
            f"motion-module GroupNorm: {'cross-frame' if self.cross_frame_motion_norm else 'per-frame'}",
            f"base UNet ResNet GroupNorm: {'cross-frame' if self.cross_frame_unet_norm else 'per-frame'}",
            f"trained beta schedule: {self.beta_schedule}",
        ]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def _family(down, up) -> str:
    if down == SD15_DOWN and up == SD15_UP:
        return "SD1.5"
    if down == SDXL_DOWN and up == SDXL_UP:
        return "SDXL"
    return "custom"


def _misfiled_kind(keys) -> str | None:
    """A useful sentence when the file is some other kind of model."""
    if any(k.startswith(("model.diffusion_model.", "first_stage_model.", "cond_stage_model.",
                         "conditioner.embedders.")) for k in keys):
        return ("it is a full Stable Diffusion checkpoint. Load it with the Load Checkpoint node "
                "(models/checkpoints); motion modules are the AnimateDiff mm_*.ckpt / *.safetensors files")
    lora = [k for k in keys if "lora" in k.lower()]
    if lora:
        if any(".motion_modules." in k for k in lora):
            return ("it is a motion LoRA, not a motion module. Put it in models/animatediff_motion_lora "
                    "and apply it on top of a motion module")
        return ("it is a spatial LoRA (for example the AnimateDiff v3 domain adapter). Apply it to the "
                "MODEL with the host's LoraLoader node, not as a motion module")
    if any(k.startswith(("encoder.", "decoder.", "taesd_")) for k in keys):
        return "it is a VAE. Load it with the VAE Loader node"
    return None


def detect_format(tensors: dict[str, torch.Tensor], source: str = "checkpoint") -> MotionFormat:
    """Read the layout of an AnimateDiff-format state dict; raise :class:`CheckpointError` otherwise."""
    levels = {"down_blocks": {}, "up_blocks": {}}
    mid = None
    pe_lengths = set()
    unmatched = []
    for key, t in tensors.items():
        m = AD_KEY.match(key)
        if m:
            side, level, j, suffix = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
            if suffix == NORM_SUFFIX:
                levels[side].setdefault(level, {})[j] = int(t.shape[0])
        else:
            m = AD_MID_KEY.match(key)
            if not m:
                unmatched.append(key)
                continue
            suffix = m.group(1)
            if suffix == NORM_SUFFIX:
                mid = int(t.shape[0])
        if key.endswith(PE_SUFFIX):
            pe_lengths.add(int(t.shape[1]))

    if not levels["down_blocks"] and not levels["up_blocks"]:
        kind = _misfiled_kind(tensors.keys())
        example = next(iter(tensors))
        if kind:
            raise CheckpointError(f"{source} is not a motion module: {kind}.")
        raise CheckpointError(
            f"{source} is not a motion module in a known layout: expected keys like "
            f"'down_blocks.0.motion_modules.0.temporal_transformer.norm.weight', found e.g. '{example}' "
            f"({len(tensors)} keys).")

    def as_lists(side):
        found = levels[side]
        out = []
        for i in range(max(found) + 1 if found else 0):
            mods = found.get(i)
            if not mods or sorted(mods) != list(range(len(mods))):
                raise CheckpointError(f"{source}: {side}.{i} has missing motion modules (found {sorted(mods or [])})")
            out.append([mods[j] for j in range(len(mods))])
        return out

    down, up = as_lists("down_blocks"), as_lists("up_blocks")
    if len(pe_lengths) > 1:
        raise CheckpointError(f"{source}: positional encodings of different lengths {sorted(pe_lengths)}")
    family = _family(down, up)
    pe_stored = bool(pe_lengths)
    dtype = next(t.dtype for k, t in tensors.items() if k.endswith("proj_in.weight"))
    notes = []
    if unmatched:
        notes.append(f"ignored {len(unmatched)} keys outside the motion modules (e.g. '{unmatched[0]}')")

    if not pe_stored:
        raise CheckpointError(
            f"{source}: AnimateDiff layout without positional encodings (AnimateLCM-style); "
            f"this format is not supported yet")
    pe_length = pe_lengths.pop()
    if family == "SDXL":
        version, name = "sdxl-beta", "AnimateDiff SDXL beta"
        cross_motion, cross_unet, beta = True, False, LINEAR_AD_SDXL
    elif mid:
        version, name = "v2", "AnimateDiff v2"
        cross_motion, cross_unet, beta = False, False, SQRT_LINEAR_AD
    elif pe_length == 24:
        version, name = "v1", "AnimateDiff v1"
        cross_motion, cross_unet, beta = False, True, SQRT_LINEAR_AD
    else:
        version, name = "v3", "AnimateDiff v3"
        cross_motion, cross_unet, beta = False, False, SQRT_LINEAR_AD
    if family == "custom":
        name += " layout (custom UNet: " + " / ".join(str(lvl[0]) for lvl in down) + " channels)"
    fmt = MotionFormat(name=name, version=version, family=family, down=down, mid=mid, up=up,
                       pe_length=pe_length, pe_stored=pe_stored, cross_frame_motion_norm=cross_motion,
                       cross_frame_unet_norm=cross_unet, beta_schedule=beta, dtype=dtype, notes=notes)
    _check_complete(tensors, fmt, source)
    return fmt


def expected_keys(fmt: MotionFormat) -> dict[str, tuple]:
    """Every key and shape an AD-format file of this layout holds."""
    out = {}

    def module(prefix, c):
        p = prefix + ".temporal_transformer."
        for k in MODULE_KEYS_NO_PE:
            out[p + k] = _shape(k, c)
        if fmt.pe_stored:
            for a in (0, 1):
                out[p + f"transformer_blocks.0.attention_blocks.{a}.pos_encoder.pe"] = (1, fmt.pe_length, c)

    for i, lvl in enumerate(fmt.down):
        for j, c in enumerate(lvl):
            module(f"down_blocks.{i}.motion_modules.{j}", c)
    if fmt.mid:
        module("mid_block.motion_modules.0", fmt.mid)
    for i, lvl in enumerate(fmt.up):
        for j, c in enumerate(lvl):
            module(f"up_blocks.{i}.motion_modules.{j}", c)
    return out


def _shape(key: str, c: int) -> tuple:
    if key.endswith("ff.net.0.proj.weight"):
        return (8 * c, c)
    if key.endswith("ff.net.0.proj.bias"):
        return (8 * c,)
    if key.endswith("ff.net.2.weight"):
        return (c, 4 * c)
    if key.endswith("weight") and ("proj_" in key or "to_" in key):
        return (c, c)
    return (c,)


def _check_complete(tensors, fmt: MotionFormat, source: str):
    expected = expected_keys(fmt)
    missing = [k for k in expected if k not in tensors]
    if missing:
        raise CheckpointError(
            f"{source}: {len(missing)} of {len(expected)} expected tensors are missing for {fmt.name} "
            f"(first: '{missing[0]}'); the file is incomplete or of an unknown variant")
    wrong = [(k, tuple(tensors[k].shape), s) for k, s in expected.items() if tuple(tensors[k].shape) != s]
    if wrong:
        k, got, want = wrong[0]
        raise CheckpointError(f"{source}: tensor '{k}' has shape {list(got)}, expected {list(want)} for {fmt.name}")
