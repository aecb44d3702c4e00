"""Recognising a motion-module checkpoint from its keys and shapes (never its file name).

See ``docs/motion-module-formats.md`` §2, §3 and §6. Three key layouts exist:

* AnimateDiff (``…motion_modules.j.temporal_transformer.…``): v1, v2, v3, SDXL beta, AnimateLCM,
  AnimateDiff-Lightning ``_comfyui`` files;
* HotShot-XL (``…temporal_attentions.j.…``, PE named ``positional_encoding``);
* diffusers ``MotionAdapter`` (``…motion_modules.j.transformer_blocks.0.attn1…``, one ``pos_embed.pe``
  per module), which includes AnimateDiff-Lightning ``_diffusers`` files and the SDXL adapters.

Every layout is renamed to AnimateDiff keys first (the *canonical* keys our modules use), then the
structure (levels, mid block, channels, PE length) decides the format. The result is a
:class:`MotionFormat`, which also says which math the module was trained with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from .checkpoint import CheckpointError

AD_KEY = re.compile(r"^(down_blocks|up_blocks)\.(\d+)\.motion_modules\.(\d+)\.temporal_transformer\.(.+)$")
AD_MID_KEY = re.compile(r"^mid_block\.motion_modules\.0\.temporal_transformer\.(.+)$")
HOTSHOT_KEY = re.compile(r"^(down_blocks|up_blocks)\.(\d+)\.temporal_attentions\.(\d+)\.(.+)$")
DIFFUSERS_KEY = re.compile(r"^(down_blocks\.\d+|up_blocks\.\d+|mid_block)\.motion_modules\.(\d+)\.(?!temporal_transformer\.)(.+)$")
NORM_SUFFIX = "norm.weight"
PE_SUFFIX = ".pos_encoder.pe"

LAYOUT_AD = "AnimateDiff"
LAYOUT_HOTSHOT = "HotShot-XL"
LAYOUT_DIFFUSERS = "diffusers MotionAdapter"

SD15_DOWN = [[320, 320], [640, 640], [1280, 1280], [1280, 1280]]
SD15_UP = [[1280] * 3, [1280] * 3, [640] * 3, [320] * 3]
SDXL_DOWN = [[320, 320], [640, 640], [1280, 1280]]
SDXL_UP = [[1280] * 3, [640] * 3, [320] * 3]

# Keys of one module relative to `temporal_transformer.`, without PE (docs/motion-module-formats.md §1.1).
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
    """A ComfyUI ``ModelSamplingDiscrete`` schedule: name as ComfyUI spells it, and its beta range.
    ``sampling`` is "" to keep the model's prediction type, or "lcm" for LCM sampling (the host's
    ModelSamplingDiscrete node, sampling "lcm")."""
    name: str
    linear_start: float
    linear_end: float
    label: str
    sampling: str = ""

    def __str__(self):
        return self.label


# ComfyUI "sqrt_linear" is diffusers "linear", which AnimateDiff SD1.5 was trained with
# (docs/motion-module-formats.md §7).
SQRT_LINEAR_AD = BetaSchedule("sqrt_linear", 0.00085, 0.012, "sqrt_linear (AnimateDiff)")
LINEAR_AD_SDXL = BetaSchedule("linear", 0.00085, 0.020, "linear (AnimateDiff-SDXL)")
LINEAR_DEFAULT = BetaSchedule("linear", 0.00085, 0.012, "linear (SD default)")  # also HotShot-XL's
LCM = BetaSchedule("linear", 0.00085, 0.012, "lcm", sampling="lcm")
BETA_SCHEDULES = {s.label: s for s in (SQRT_LINEAR_AD, LINEAR_AD_SDXL, LINEAR_DEFAULT, LCM)}

# GroupNorm choices on ApplyMotionModule: (motion-module GN spans frames, base-UNet ResNet GN spans frames).
GROUPNORM_AS_TRAINED = "as trained"
GROUPNORM_MODES = {
    "per-frame": (False, False),
    "cross-frame": (True, False),
    "cross-frame incl. UNet ResNets": (True, True),
}


@dataclass
class MotionFormat:
    """What a checkpoint is, and the math it expects."""
    name: str                      # e.g. "AnimateDiff v2"
    version: str                   # "v1" "v2" "v3" "sdxl-beta" "hotshot-xl" "animatelcm" "diffusers"
    family: str                    # "SD1.5" | "SDXL" | "custom"
    down: list                     # per level, the channel width of each module
    mid: int | None                # channel width of the mid-block module, if any
    up: list
    pe_length: int                 # max frames without context windows
    pe_stored: bool                # whether the file carries the PE buffers
    cross_frame_motion_norm: bool  # GroupNorm statistics of the motion module span frames
    cross_frame_unet_norm: bool    # the base UNet's ResNet/out GroupNorms span frames (v1, HotShot-XL)
    beta_schedule: BetaSchedule
    dtype: torch.dtype = torch.float32
    notes: list = field(default_factory=list)
    layout: str = LAYOUT_AD        # key layout of the file

    @property
    def module_count(self) -> int:
        return sum(map(len, self.down)) + (1 if self.mid else 0) + sum(map(len, self.up))

    def channels(self) -> list[int]:
        return sorted({c for lvl in self.down + self.up for c in lvl} | ({self.mid} if self.mid else set()))

    def groupnorm(self, mode: str = GROUPNORM_AS_TRAINED) -> tuple[bool, bool]:
        """(motion-module GN spans frames, base-UNet ResNet GN spans frames) for a GroupNorm choice."""
        if mode in (None, GROUPNORM_AS_TRAINED):
            return self.cross_frame_motion_norm, self.cross_frame_unet_norm
        if mode not in GROUPNORM_MODES:
            raise ValueError(f"unknown GroupNorm mode '{mode}'; one of: "
                             f"{', '.join([GROUPNORM_AS_TRAINED, *GROUPNORM_MODES])}")
        return GROUPNORM_MODES[mode]

    def summary(self) -> str:
        mid = 1 if self.mid else 0
        lines = [
            f"format: {self.name}",
            f"version: {self.version}",
            f"key layout: {self.layout}",
            f"family: {self.family}",
            f"modules: {self.module_count} (down {sum(map(len, self.down))}, mid {mid}, up {sum(map(len, self.up))})",
            f"channels: {', '.join(map(str, self.channels()))}",
            f"max frames without context windows: {self.pe_length}"
            + ("" if self.pe_stored else " (positional encoding not stored in the file; computed)"),
            f"dtype: {str(self.dtype).replace('torch.', '')}",
            f"motion-module GroupNorm: {'cross-frame' if self.cross_frame_motion_norm else 'per-frame'}",
            f"base UNet ResNet GroupNorm: {'cross-frame' if self.cross_frame_unet_norm else 'per-frame'}",
            f"trained beta schedule: {self.beta_schedule}",
        ]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def _family(down, up) -> tuple[str, bool]:
    """(family by structure, whether the channels are those of the real UNet)."""
    counts = ([len(lvl) for lvl in down], [len(lvl) for lvl in up])
    if counts == ([2] * 4, [3] * 4):
        return "SD1.5", (down, up) == (SD15_DOWN, SD15_UP)
    if counts == ([2] * 3, [3] * 3):
        return "SDXL", (down, up) == (SDXL_DOWN, SDXL_UP)
    return "custom", False


def _misfiled_kind(keys) -> str | None:
    """A useful sentence when the file is some other kind of model."""
    keys = list(keys)
    if any(k.startswith(("model.diffusion_model.", "first_stage_model.", "cond_stage_model.",
                         "conditioner.embedders.")) for k in keys):
        return ("it is a full Stable Diffusion checkpoint. Load it with the Load Checkpoint node "
                "(models/checkpoints); motion modules are the AnimateDiff mm_*.ckpt / *.safetensors files")
    lora = [k for k in keys if "lora" in k.lower()]
    if lora:
        if any(".motion_modules." in k or ".temporal_attentions." in k for k in lora):
            return ("it is a motion LoRA, not a motion module. Put it in models/animatediff_motion_lora "
                    "and apply it on top of a motion module with the Load Motion LoRA node")
        return ("it is a spatial LoRA (for example the AnimateDiff v3 domain adapter v3_sd15_adapter.ckpt). "
                "Apply it to the MODEL with the host's LoraLoader node (models/loras), not as a motion module")
    if any(".attentions." in k or ".resnets." in k for k in keys) and any(k.startswith("conv_in.") for k in keys):
        return ("it is a diffusers UNet (spatial weights), not a motion module. Motion modules hold only "
                "'motion_modules' / 'temporal_attentions' layers")
    if any(k.startswith(("encoder.", "decoder.", "taesd_")) for k in keys):
        return "it is a VAE. Load it with the VAE Loader node"
    return None


# ------------------------------------------------------------------------------------------------
# Key layouts -> canonical (AnimateDiff) keys

def _diffusers_suffix(rest: str) -> list[str]:
    """AnimateDiff suffixes (after ``temporal_transformer.``) for one diffusers key suffix."""
    m = re.match(r"^transformer_blocks\.(\d+)\.pos_embed\.pe$", rest)
    if m:
        return [f"transformer_blocks.{m.group(1)}.attention_blocks.{a}.pos_encoder.pe" for a in (0, 1)]
    m = re.match(r"^transformer_blocks\.(\d+)\.(attn1|attn2|norm1|norm2|norm3)\.(.+)$", rest)
    if m:
        part = {"attn1": "attention_blocks.0", "attn2": "attention_blocks.1", "norm1": "norms.0",
                "norm2": "norms.1", "norm3": "ff_norm"}[m.group(2)]
        return [f"transformer_blocks.{m.group(1)}.{part}.{m.group(3)}"]
    return [rest]


def canonical_key_map(keys) -> tuple[str, dict[str, str]]:
    """(layout, {canonical AnimateDiff key: key in the file}) for a file's keys. Keys that belong to no
    motion module are left out. A diffusers ``pos_embed.pe`` feeds both attention blocks' PE."""
    keys = list(keys)
    hotshot = [k for k in keys if HOTSHOT_KEY.match(k)]
    if hotshot:
        out = {}
        for k in hotshot:
            side, level, j, rest = HOTSHOT_KEY.match(k).groups()
            if rest.endswith("pos_encoder.positional_encoding"):
                rest = rest[: -len("positional_encoding")] + "pe"
            out[f"{side}.{level}.motion_modules.{j}.temporal_transformer.{rest}"] = k
        return LAYOUT_HOTSHOT, out
    ad = [k for k in keys if AD_KEY.match(k) or AD_MID_KEY.match(k)]
    diffusers = [k for k in keys if DIFFUSERS_KEY.match(k)]
    if diffusers and not ad:
        out = {}
        for k in diffusers:
            block, j, rest = DIFFUSERS_KEY.match(k).groups()
            for suffix in _diffusers_suffix(rest):
                out[f"{block}.motion_modules.{j}.temporal_transformer.{suffix}"] = k
        return LAYOUT_DIFFUSERS, out
    return LAYOUT_AD, {k: k for k in ad}


def file_keys(canonical: dict, layout: str) -> dict:
    """The inverse of :func:`canonical_key_map`: ``{canonical key: value}`` -> ``{file key: value}``."""
    out = {}
    for key, value in canonical.items():
        if layout == LAYOUT_AD:
            out[key] = value
            continue
        m = AD_KEY.match(key)
        if m:
            prefix, rest = f"{m.group(1)}.{m.group(2)}", m.group(4)
            j = m.group(3)
        else:
            prefix, j, rest = "mid_block", "0", AD_MID_KEY.match(key).group(1)
        if layout == LAYOUT_HOTSHOT:
            rest = rest[: -len("pe")] + "positional_encoding" if rest.endswith(PE_SUFFIX) else rest
            out[f"{prefix}.temporal_attentions.{j}.{rest}"] = value
            continue
        pe = re.match(r"^transformer_blocks\.(\d+)\.attention_blocks\.(\d)\.pos_encoder\.pe$", rest)
        if pe:
            if pe.group(2) == "0":
                out[f"{prefix}.motion_modules.{j}.transformer_blocks.{pe.group(1)}.pos_embed.pe"] = value
            continue
        for ad_part, d_part in (("attention_blocks.0", "attn1"), ("attention_blocks.1", "attn2"),
                                ("norms.0", "norm1"), ("norms.1", "norm2"), ("ff_norm", "norm3")):
            rest = re.sub(rf"^(transformer_blocks\.\d+)\.{re.escape(ad_part)}\.", rf"\1.{d_part}.", rest)
        out[f"{prefix}.motion_modules.{j}.{rest}"] = value
    return out


# ------------------------------------------------------------------------------------------------
# Detection

def detect_format(tensors: dict[str, torch.Tensor], source: str = "checkpoint", config: dict | None = None
                  ) -> MotionFormat:
    """The format of a motion-module state dict (any layout); raise :class:`CheckpointError` otherwise."""
    return analyse(tensors, source, config)[0]


def analyse(tensors: dict[str, torch.Tensor], source: str = "checkpoint", config: dict | None = None
            ) -> tuple[MotionFormat, dict[str, str]]:
    """(format, {canonical key: file key}) of a state dict. ``tensors`` may be meta tensors: only keys,
    shapes and dtypes are read. ``config`` is a diffusers ``config.json`` found beside the file."""
    layout, key_map = canonical_key_map(tensors.keys())
    if not key_map:
        kind = _misfiled_kind(tensors.keys())
        example = next(iter(tensors))
        if kind:
            raise CheckpointError(f"{source} is not a motion module: {kind}.")
        raise CheckpointError(
            f"{source} is not a motion module in a known layout: expected keys like "
            f"'down_blocks.0.motion_modules.0.temporal_transformer.norm.weight' (AnimateDiff), "
            f"'down_blocks.0.temporal_attentions.0.norm.weight' (HotShot-XL) or "
            f"'down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.to_q.weight' (diffusers MotionAdapter); "
            f"found e.g. '{example}' ({len(tensors)} keys).")
    lora = [k for k in key_map.values() if "lora" in k.lower()]
    if lora:
        raise CheckpointError(f"{source} is not a motion module: {_misfiled_kind(lora)}.")
    embedding = next((k for k in tensors if k.startswith("controlnet_cond_embedding.")), None)
    if embedding is not None:
        raise CheckpointError(
            f"{source} is not a motion module: it is a SparseCtrl (AnimateDiff v3 sparse ControlNet; found "
            f"'{embedding}' beside its motion modules). Put it in models/controlnet and load it with the Load "
            f"SparseCtrl node.")
    if "conv_in.weight" in tensors:
        raise CheckpointError(
            f"{source}: a PIA (image-to-video) motion module: it needs a 9-channel conv_in in the UNet, "
            f"which this pack does not support. Use an AnimateDiff v1/v2/v3 module.")
    canonical = {ck: tensors[fk] for ck, fk in key_map.items()}

    levels = {"down_blocks": {}, "up_blocks": {}}
    mid = None
    pe_lengths = set()
    for key, t in canonical.items():
        m = AD_KEY.match(key)
        if m:
            if m.group(4) == NORM_SUFFIX:
                levels[m.group(1)].setdefault(int(m.group(2)), {})[int(m.group(3))] = int(t.shape[0])
        elif key == "mid_block.motion_modules.0.temporal_transformer." + NORM_SUFFIX:
            mid = int(t.shape[0])
        if key.endswith(PE_SUFFIX):
            if t.dim() != 3:
                raise CheckpointError(f"{source}: positional encoding '{key_map[key]}' has shape "
                                      f"{list(t.shape)}, expected [1, length, channels]")
            pe_lengths.add(int(t.shape[1]))
    if not levels["down_blocks"] and not levels["up_blocks"]:
        raise CheckpointError(
            f"{source}: has {layout} motion-module keys but no module's 'norm.weight' (e.g. "
            f"'down_blocks.0.motion_modules.0.temporal_transformer.norm.weight'); the file is incomplete")

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
    family, real_channels = _family(down, up)
    pe_stored = bool(pe_lengths)
    pe_length = pe_lengths.pop() if pe_stored else None
    dtypes = {t.dtype for k, t in canonical.items() if t.is_floating_point() and not k.endswith(PE_SUFFIX)}
    dtype = next(t.dtype for k, t in canonical.items() if k.endswith("proj_in.weight"))
    notes = []
    if len(dtypes) > 1:
        notes.append(f"mixed dtypes {sorted(str(d).replace('torch.', '') for d in dtypes)} in the file; "
                     f"everything is cast once to {str(dtype).replace('torch.', '')}")
    outside = [k for k in tensors if k not in set(key_map.values())]
    if outside:
        notes.append(f"ignored {len(outside)} keys outside the motion modules (e.g. '{outside[0]}')")

    fmt = _classify(layout, family, down, mid, up, pe_length, source, notes)
    fmt.dtype = dtype
    fmt.pe_stored = pe_stored
    if family != "custom" and not real_channels:
        fmt.name += f" layout (custom channels: {' / '.join(str(lvl[0]) for lvl in down)})"
    elif family == "custom":
        fmt.name += f" layout (custom UNet: {' / '.join(str(lvl[0]) for lvl in down)} channels)"
    if config is not None:
        _check_diffusers_config(config, fmt, source)
    _check_complete(canonical, fmt, source, key_map)
    return fmt, key_map


def _classify(layout, family, down, mid, up, pe_length, source, notes) -> MotionFormat:
    def make(name, version, length, cross_motion, cross_unet, beta):
        return MotionFormat(name=name, version=version, family=family, down=down, mid=mid, up=up,
                            pe_length=length, pe_stored=pe_length is not None,
                            cross_frame_motion_norm=cross_motion, cross_frame_unet_norm=cross_unet,
                            beta_schedule=beta, notes=notes, layout=layout)

    if layout == LAYOUT_HOTSHOT:
        # Same module math as v1-v3 (per-frame); its UNet's ResNet GroupNorms span frames
        # (docs/motion-module-formats.md §3.5).
        return make("HotShot-XL", "hotshot-xl", pe_length or 24, False, True, LINEAR_DEFAULT)
    if layout == LAYOUT_DIFFUSERS:
        # diffusers' AnimateDiffTransformer3D normalises across frames for every adapter
        # (docs/motion-module-formats.md §3.8).
        beta = LINEAR_AD_SDXL if family == "SDXL" else SQRT_LINEAR_AD
        what = f"{family}, {'with' if mid else 'no'} mid block"
        if not pe_length:
            notes.append("no pos_embed.pe in the file; positional encoding computed for 32 frames")
        notes.append("diffusers MotionAdapter files include AnimateDiff-Lightning *_diffusers files and "
                     "AnimateLCM's diffusers copy; pick beta_schedule 'lcm' by hand for AnimateLCM")
        return make(f"diffusers MotionAdapter ({what})", "diffusers", pe_length or 32, True, False, beta)
    if family == "SDXL":
        if not pe_length:
            notes.append("no positional encoding stored; computed for 32 frames")
        # The sdxl branch applies GroupNorm to the 5-D tensor: statistics span frames
        # (docs/motion-module-formats.md §3.4).
        return make("AnimateDiff SDXL beta", "sdxl-beta", pe_length or 32, True, False, LINEAR_AD_SDXL)
    if mid:
        if not pe_length:
            # AnimateLCM stores no PE; its code hard-codes 64 (docs/motion-module-formats.md §3.6).
            return make("AnimateLCM", "animatelcm", 64, False, False, LCM)
        notes.append("AnimateDiff-Lightning *_comfyui files have this same layout (distilled from v2); "
                     "they cannot be told apart by their keys")
        return make("AnimateDiff v2", "v2", pe_length, False, False, SQRT_LINEAR_AD)
    if not pe_length:
        notes.append("no positional encoding stored, so v1 (24 frames) and v3 (32) cannot be told apart; "
                     "treated as v3 with 32 frames")
        return make("AnimateDiff v3", "v3", 32, False, False, SQRT_LINEAR_AD)
    if pe_length == 32:
        return make("AnimateDiff v3", "v3", 32, False, False, SQRT_LINEAR_AD)
    if pe_length != 24:
        notes.append(f"positional encoding of {pe_length} frames (a longer-context variant such as "
                     f"LongAnimateDiff); treated like v1")
    return make("AnimateDiff v1", "v1", pe_length, False, True, SQRT_LINEAR_AD)


def _check_diffusers_config(config: dict, fmt: MotionFormat, source: str):
    """Refuse a diffusers ``config.json`` that contradicts the weights beside it."""
    def fail(what, said, found):
        raise CheckpointError(
            f"{source}: the config.json beside it says {what} = {said}, but the weights have {found}. "
            f"The config belongs to another model, or the weights to another config: keep each adapter's "
            f"diffusion_pytorch_model.safetensors and config.json together in their own folder")

    cls = config.get("_class_name")
    if cls not in (None, "MotionAdapter"):
        raise CheckpointError(f"{source}: the config.json beside it describes a '{cls}', not a MotionAdapter")
    channels = [lvl[0] for lvl in fmt.down]
    if "block_out_channels" in config and list(config["block_out_channels"]) != channels:
        fail("block_out_channels", list(config["block_out_channels"]), channels)
    if "use_motion_mid_block" in config and bool(config["use_motion_mid_block"]) != bool(fmt.mid):
        fail("use_motion_mid_block", config["use_motion_mid_block"], "a mid block" if fmt.mid else "no mid block")
    per_block = config.get("motion_layers_per_block")
    if per_block is not None:
        want = per_block if isinstance(per_block, int) else per_block[0]
        if [len(lvl) for lvl in fmt.down] != [want] * len(fmt.down):
            fail("motion_layers_per_block", per_block, f"{[len(lvl) for lvl in fmt.down]} modules per down block")
    if fmt.pe_stored and config.get("motion_max_seq_length") not in (None, fmt.pe_length):
        fail("motion_max_seq_length", config["motion_max_seq_length"], f"positional encodings of {fmt.pe_length}")
    for key, want in (("motion_num_attention_heads", 8), ("motion_norm_num_groups", 32),
                      ("motion_transformer_layers_per_block", 1), ("conv_in_channels", None)):
        value = config.get(key, want)
        if isinstance(value, list) and len(set(value)) == 1:
            value = value[0]
        if value != want:
            raise CheckpointError(f"{source}: config.json sets {key} = {value}; only {want} (the released "
                                  f"AnimateDiff adapters) is supported")


def expected_keys(fmt: MotionFormat) -> dict[str, tuple]:
    """Every canonical (AnimateDiff) key and shape of this layout."""
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


def _file_key(key: str, layout: str) -> str:
    try:
        return next(iter(file_keys({key: None}, layout)), key)
    except AttributeError:
        return key


def _check_complete(canonical, fmt: MotionFormat, source: str, key_map: dict):
    expected = expected_keys(fmt)
    missing = [k for k in expected if k not in canonical]
    if missing:
        raise CheckpointError(
            f"{source}: {len(missing)} of {len(expected)} expected tensors are missing for {fmt.name} "
            f"(first: '{_file_key(missing[0], fmt.layout)}'); the file is incomplete "
            f"or of an unknown variant")
    unknown = [k for k in canonical if k not in expected]
    if unknown:
        raise CheckpointError(
            f"{source}: {len(unknown)} motion-module tensors that {fmt.name} does not have (first: "
            f"'{key_map[unknown[0]]}'); an unsupported variant (e.g. more than one transformer block per module)")
    wrong = [(k, tuple(canonical[k].shape), s) for k, s in expected.items() if tuple(canonical[k].shape) != s]
    if wrong:
        k, got, want = wrong[0]
        raise CheckpointError(f"{source}: tensor '{key_map[k]}' has shape {list(got)}, expected {list(want)} "
                              f"for {fmt.name}")
