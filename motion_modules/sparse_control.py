"""SparseCtrl (AnimateDiff v3's sparse ControlNet): recognising its files and computing its residuals.

Pure torch: no ComfyUI import. Written from the math in docs/sparsectrl.md (derived from the original
``animatediff/models/sparse_controlnet.py`` and its configs). Parameter names reproduce the original
files' keys, so a state dict loads with ``strict=True`` and tests compare every key and shape with the
manifests in tests/data/sparsectrl/.

Layout: like the host's own layers, everything works on ``(B*F, C, H, W)`` with each clip's frames
contiguous. Every layer except the motion modules is per frame (convolutions, per-frame GroupNorm,
spatial attention), so it is a plain 2-D layer over the batch; the motion modules are the project's own
temporal layer (:class:`motion_modules.temporal.MotionModule`, one self-attention per block here) and are
told the frame count.

Layer classes come from an ``operations`` namespace (``Conv2d``, ``Linear``, ``GroupNorm``,
``LayerNorm``), as ComfyUI's own modules take ``operations=``; the default is torch's.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import kernels
from .checkpoint import PICKLE_SUFFIXES, CheckpointError, _read_torch, read_layout, read_tensors
from .temporal import FeedForward, FrameLimitError, MotionModule

HEADS = 8                 # spatial and temporal attention heads (SD1.5: attention_head_dim 8)
RESNET_EPS = 1e-5         # the UNet config's norm_eps, passed to every ResNet
TRANSFORMER_GN_EPS = 1e-6
LAYERNORM_EPS = 1e-5
GROUPS = 32
SD15_CHANNELS = (320, 640, 1280, 1280)
DEFAULT_PE_LENGTH = 32    # temporal_position_encoding_max_len of both released configs

MODE_RGB = "rgb"            # latent condition: VAE-encoded images, simplified embedding (one conv)
MODE_SCRIBBLE = "scribble"  # image condition: the image itself, a small conv encoder down to the latent size

EMBED = "controlnet_cond_embedding."


class SparseCtrlInputError(ValueError):
    """Keyframes, indices or a clip that do not fit together, with a message naming the values."""


@dataclass(frozen=True)
class SparseCtrlFormat:
    """What a SparseCtrl file is, read from its tensors."""
    mode: str                            # MODE_RGB | MODE_SCRIBBLE
    channels: tuple[int, ...]            # block_out_channels, one per level
    layers_per_block: int
    attention: tuple[bool, ...]          # per level: spatial transformers (CrossAttnDownBlock)
    motion: tuple[bool, ...]             # per level: motion modules
    condition_channels: int              # channels of the condition, without the mask channel
    embedding: tuple[int, ...] | None    # conditioning encoder widths; None: the simplified one-conv embedding
    context_dim: int
    pe_length: int
    pe_stored: bool
    in_channels: int = 4
    zero_noisy_input: bool = True        # set_noisy_sample_input_to_zero: true in both released configs
    dtype: torch.dtype = torch.float32

    @property
    def family(self) -> str:
        return "SD1.5" if (self.channels, self.context_dim) == (SD15_CHANNELS, 768) else "custom"

    @property
    def hint_scale(self) -> int:
        """How many times larger than the latent the condition is (1 for RGB latents, 8 for images)."""
        return 1 if self.embedding is None else 2 ** (len(self.embedding) - 1)

    def residual_channels(self) -> list[int]:
        """Channels of the down residuals, in the host UNet's input-block order (then the mid one)."""
        out = [self.channels[0]]
        for i, c in enumerate(self.channels):
            out += [c] * self.layers_per_block
            if i < len(self.channels) - 1:
                out.append(c)
        return out

    def summary(self) -> str:
        kind = ("RGB (keyframes VAE-encoded, simplified condition embedding)" if self.mode == MODE_RGB
                else "scribble / image (keyframes as images, conditioning encoder)")
        return "\n".join([
            f"SparseCtrl: {kind}",
            f"family: {self.family}",
            f"levels: {' / '.join(map(str, self.channels))} channels, {self.layers_per_block} ResNets each",
            f"motion modules: {sum(self.motion) * self.layers_per_block} (levels "
            f"{', '.join(str(i) for i, m in enumerate(self.motion) if m)})",
            f"max frames without context windows: {self.pe_length}"
            + ("" if self.pe_stored else " (positional encoding not stored in the file; computed)"),
            f"dtype: {str(self.dtype).replace('torch.', '')}",
        ])


# ------------------------------------------------------------------------------------------------
# Layers

class _TorchOps:
    Conv2d = nn.Conv2d
    Linear = kernels.Linear
    GroupNorm = nn.GroupNorm
    LayerNorm = nn.LayerNorm


def timestep_embedding(timesteps: torch.Tensor, channels: int) -> torch.Tensor:
    """Sinusoidal embedding, cos half first (flip_sin_to_cos, freq_shift 0), in fp32."""
    half = channels // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedding(nn.Module):
    def __init__(self, channels: int, dim: int, ops, **kw):
        super().__init__()
        self.linear_1 = ops.Linear(channels, dim, **kw)
        self.linear_2 = ops.Linear(dim, dim, **kw)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class ResnetBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, temb: int, ops, **kw):
        super().__init__()
        self.norm1 = ops.GroupNorm(GROUPS, c_in, eps=RESNET_EPS, **kw)
        self.conv1 = ops.Conv2d(c_in, c_out, 3, padding=1, **kw)
        self.time_emb_proj = ops.Linear(temb, c_out, **kw)
        self.norm2 = ops.GroupNorm(GROUPS, c_out, eps=RESNET_EPS, **kw)
        self.conv2 = ops.Conv2d(c_out, c_out, 3, padding=1, **kw)
        self.conv_shortcut = ops.Conv2d(c_in, c_out, 1, **kw) if c_in != c_out else None

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class Attention(nn.Module):
    def __init__(self, channels: int, context_dim: int | None, ops, **kw):
        super().__init__()
        kv = context_dim or channels
        self.to_q = ops.Linear(channels, channels, bias=False, **kw)
        self.to_k = ops.Linear(kv, channels, bias=False, **kw)
        self.to_v = ops.Linear(kv, channels, bias=False, **kw)
        self.to_out = nn.ModuleList([ops.Linear(channels, channels, **kw)])

    def forward(self, x, context=None):
        context = x if context is None else context
        n, tokens, c = x.shape

        def heads(t):
            return t.view(n, t.shape[1], HEADS, c // HEADS).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.to_q(x)), heads(self.to_k(context)), heads(self.to_v(context)))
        return self.to_out[0](out.transpose(1, 2).reshape(n, tokens, c))


class BasicTransformerBlock(nn.Module):
    def __init__(self, channels: int, context_dim: int, ops, **kw):
        super().__init__()
        self.attn1 = Attention(channels, None, ops, **kw)
        self.norm1 = ops.LayerNorm(channels, eps=LAYERNORM_EPS, **kw)
        self.attn2 = Attention(channels, context_dim, ops, **kw)
        self.norm2 = ops.LayerNorm(channels, eps=LAYERNORM_EPS, **kw)
        self.ff = FeedForward(channels, operations=ops, **kw)
        self.norm3 = ops.LayerNorm(channels, eps=LAYERNORM_EPS, **kw)

    def forward(self, x, context):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    """Per-frame spatial transformer (Transformer3DModel with 1x1-conv projections)."""

    def __init__(self, channels: int, context_dim: int, ops, **kw):
        super().__init__()
        self.norm = ops.GroupNorm(GROUPS, channels, eps=TRANSFORMER_GN_EPS, **kw)
        self.proj_in = ops.Conv2d(channels, channels, 1, **kw)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(channels, context_dim, ops, **kw)])
        self.proj_out = ops.Conv2d(channels, channels, 1, **kw)

    def forward(self, x, context):
        n, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(n, h * w, c)
        for block in self.transformer_blocks:
            tokens = block(tokens, context)
        return self.proj_out(tokens.reshape(n, h, w, c).permute(0, 3, 1, 2)) + x


class Downsample(nn.Module):
    def __init__(self, channels: int, ops, **kw):
        super().__init__()
        self.conv = ops.Conv2d(channels, channels, 3, stride=2, padding=1, **kw)

    def forward(self, x):
        return self.conv(x)


class DownBlock(nn.Module):
    def __init__(self, c_in, c_out, temb, layers, attention, motion, downsample, fmt, ops, **kw):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(c_in if j == 0 else c_out, c_out, temb, ops, **kw)
                                      for j in range(layers)])
        self.attentions = nn.ModuleList([SpatialTransformer(c_out, fmt.context_dim, ops, **kw)
                                         for _ in range(layers)]) if attention else None
        self.motion_modules = nn.ModuleList(
            [MotionModule(c_out, fmt.pe_length, fmt.pe_stored, operations=ops, attention_blocks=1, **kw)
             for _ in range(layers)]) if motion else None
        self.downsamplers = nn.ModuleList([Downsample(c_out, ops, **kw)]) if downsample else None

    def forward(self, x, emb, context, frames):
        outputs = []
        for j, resnet in enumerate(self.resnets):
            x = resnet(x, emb)
            if self.attentions is not None:
                x = self.attentions[j](x, context)
            if self.motion_modules is not None:
                x = self.motion_modules[j](x, frames)
            outputs.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            outputs.append(x)
        return x, outputs


class MidBlock(nn.Module):
    def __init__(self, channels, temb, fmt, ops, **kw):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(channels, channels, temb, ops, **kw) for _ in range(2)])
        self.attentions = nn.ModuleList([SpatialTransformer(channels, fmt.context_dim, ops, **kw)])

    def forward(self, x, emb, context):
        x = self.resnets[0](x, emb)
        return self.resnets[1](self.attentions[0](x, context), emb)


class ConditioningEmbedding(nn.Module):
    """The image-condition encoder: conv_in, pairs of (3x3, 3x3 stride 2) convs, conv_out; SiLU between."""

    def __init__(self, c_in: int, widths: tuple[int, ...], c_out: int, ops, **kw):
        super().__init__()
        self.conv_in = ops.Conv2d(c_in, widths[0], 3, padding=1, **kw)
        blocks = []
        for a, b in zip(widths[:-1], widths[1:]):
            blocks += [ops.Conv2d(a, a, 3, padding=1, **kw), ops.Conv2d(a, b, 3, padding=1, stride=2, **kw)]
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = ops.Conv2d(widths[-1], c_out, 3, padding=1, **kw)

    def forward(self, x):
        x = F.silu(self.conv_in(x))
        for block in self.blocks:
            x = F.silu(block(x))
        return self.conv_out(x)


class SparseControlNet(nn.Module):
    """The SparseCtrl network. :meth:`forward` returns the down residuals (in the host UNet's input-block
    order) and the mid residual, each ``(B*F, C, h, w)``, times ``scale``."""

    def __init__(self, fmt: SparseCtrlFormat, device=None, dtype=None, operations=None):
        super().__init__()
        ops = operations or _TorchOps
        kw = {"device": device, "dtype": dtype}
        self.format = fmt
        c0 = fmt.channels[0]
        temb = 4 * c0
        self.conv_in = ops.Conv2d(fmt.in_channels, c0, 3, padding=1, **kw)
        cond_in = fmt.condition_channels + 1  # + the conditioning mask
        if fmt.embedding is None:
            self.controlnet_cond_embedding = ops.Conv2d(cond_in, c0, 3, padding=1, **kw)
        else:
            self.controlnet_cond_embedding = ConditioningEmbedding(cond_in, fmt.embedding, c0, ops, **kw)
        self.time_embedding = TimestepEmbedding(c0, temb, ops, **kw)
        levels = len(fmt.channels)
        self.down_blocks = nn.ModuleList([
            DownBlock(fmt.channels[max(i - 1, 0)], c, temb, fmt.layers_per_block, fmt.attention[i], fmt.motion[i],
                      i < levels - 1, fmt, ops, **kw) for i, c in enumerate(fmt.channels)])
        self.controlnet_down_blocks = nn.ModuleList([ops.Conv2d(c, c, 1, **kw) for c in fmt.residual_channels()])
        self.mid_block = MidBlock(fmt.channels[-1], temb, fmt, ops, **kw)
        self.controlnet_mid_block = ops.Conv2d(fmt.channels[-1], fmt.channels[-1], 1, **kw)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor, condition: torch.Tensor,
                mask: torch.Tensor, frames: int, scale: float = 1.0):
        """``x`` (B*F, in, h, w) noisy latents in the compute dtype (unused but for their shape and dtype when
        the noisy input is zeroed, as released); ``timesteps`` (B*F,) or a scalar; ``context`` (B*F or 1,
        tokens, dim); ``condition`` (B*F, condition_channels, h*s, w*s) with zeros where no keyframe is;
        ``mask`` (B*F, 1, h*s, w*s), 1 on keyframes (s = ``format.hint_scale``)."""
        fmt = self.format
        bf = x.shape[0]
        if bf % frames:
            raise SparseCtrlInputError(f"a batch of {bf} latents cannot be split into clips of {frames} frames")
        if frames > fmt.pe_length:
            raise FrameLimitError(frames, fmt.pe_length)
        dtype = x.dtype  # the compute dtype: the caller's (weights stored in another one cast per call)
        timesteps = torch.as_tensor(timesteps, device=x.device).reshape(-1)
        if timesteps.shape[0] != bf:
            timesteps = timesteps.expand(bf) if timesteps.shape[0] == 1 else timesteps.repeat_interleave(
                bf // timesteps.shape[0])
        emb = self.time_embedding(timestep_embedding(timesteps, fmt.channels[0]).to(dtype))
        if context.shape[0] != bf:
            context = context.repeat_interleave(bf // context.shape[0], dim=0)
        context = context.to(dtype)
        h = self.conv_in(torch.zeros_like(x) if fmt.zero_noisy_input else x)
        h = h + self.controlnet_cond_embedding(torch.cat([condition, mask], dim=1).to(dtype))
        residuals = [h]
        for block in self.down_blocks:
            h, outputs = block(h, emb, context, frames)
            residuals += outputs
        h = self.mid_block(h, emb, context)
        down = [conv(r) * scale for conv, r in zip(self.controlnet_down_blocks, residuals)]
        return down, self.controlnet_mid_block(h) * scale


# ------------------------------------------------------------------------------------------------
# Recognising a file

DOWN_RESNET = re.compile(r"^down_blocks\.(\d+)\.resnets\.(\d+)\.conv1\.weight$")
MOTION_AD = re.compile(r"^(down_blocks|up_blocks|mid_block)(\.\d+)?\.motion_modules\.\d+\.temporal_transformer\.")
MOTION_DIFFUSERS = re.compile(r"^down_blocks\.\d+\.motion_modules\.\d+\.transformer_blocks\.\d+\.attn1\.")
PE_SUFFIX = "pos_encoder.pe"


def _what_else(keys, source: str) -> str:
    keys = list(keys)
    example = keys[0] if keys else "(none)"
    if any(MOTION_AD.match(k) for k in keys):
        return (f"{source} is not a SparseCtrl: it is an AnimateDiff motion module (found e.g. "
                f"'{next(k for k in keys if MOTION_AD.match(k))}' and no '{EMBED}*' keys). Load it with the "
                f"Load Motion Module node (models/animatediff_models)")
    if any(k.startswith("control_model.") or "input_hint_block" in k for k in keys):
        return (f"{source} is not a SparseCtrl: it is a regular ControlNet (found e.g. "
                f"'{next(k for k in keys if k.startswith('control_model.') or 'input_hint_block' in k)}'). Use the "
                f"host's Load ControlNet Model and Apply ControlNet nodes")
    if any(k.startswith(("model.diffusion_model.", "first_stage_model.")) for k in keys):
        return f"{source} is not a SparseCtrl: it is a full Stable Diffusion checkpoint (Load Checkpoint)"
    return (f"{source} is not a SparseCtrl in the original AnimateDiff layout: expected keys like "
            f"'{EMBED}weight' (RGB) or '{EMBED}conv_in.weight' (scribble) and "
            f"'down_blocks.0.motion_modules.0.temporal_transformer.norm.weight'; found e.g. '{example}' "
            f"({len(keys)} keys)")


def detect_sparse_ctrl(tensors: dict, source: str = "checkpoint") -> SparseCtrlFormat:
    """The format of a SparseCtrl state dict (meta tensors are enough); :class:`CheckpointError` otherwise."""
    keys = list(tensors)
    if not any(k.startswith(EMBED) for k in keys) or "conv_in.weight" not in tensors:
        raise CheckpointError(_what_else(keys, source) + ".")
    diffusers_key = next((k for k in keys if MOTION_DIFFUSERS.match(k)), None)
    if diffusers_key:
        raise CheckpointError(
            f"{source}: a SparseCtrl in the diffusers layout (found '{diffusers_key}'); this pack reads the original "
            f"AnimateDiff files (v3_sd15_sparsectrl_rgb.ckpt / v3_sd15_sparsectrl_scribble.ckpt) only.")
    if EMBED + "weight" in tensors:
        mode, embedding = MODE_RGB, None
        cond_in = tensors[EMBED + "weight"].shape[1]
    elif EMBED + "conv_in.weight" in tensors:
        mode = MODE_SCRIBBLE
        cond_in = tensors[EMBED + "conv_in.weight"].shape[1]
        widths = [int(tensors[EMBED + "conv_in.weight"].shape[0])]
        i = 1
        while EMBED + f"blocks.{i}.weight" in tensors:
            widths.append(int(tensors[EMBED + f"blocks.{i}.weight"].shape[0]))
            i += 2
        embedding = tuple(widths)
    else:
        found = next(k for k in keys if k.startswith(EMBED))
        raise CheckpointError(f"{source}: unknown SparseCtrl condition embedding (found '{found}'; expected "
                              f"'{EMBED}weight' or '{EMBED}conv_in.weight').")
    resnets: dict[int, dict[int, int]] = {}
    for k in keys:
        m = DOWN_RESNET.match(k)
        if m:
            resnets.setdefault(int(m[1]), {})[int(m[2])] = int(tensors[k].shape[0])
    if not resnets or sorted(resnets) != list(range(len(resnets))):
        raise CheckpointError(f"{source}: SparseCtrl down blocks are missing or incomplete (levels found: "
                              f"{sorted(resnets)}); the file is incomplete.")
    layers = {len(r) for r in resnets.values()}
    if len(layers) != 1:
        raise CheckpointError(f"{source}: SparseCtrl levels have different ResNet counts "
                              f"{[len(resnets[i]) for i in sorted(resnets)]}; an unsupported variant.")
    levels = len(resnets)
    channels = tuple(resnets[i][0] for i in range(levels))
    attention = tuple(f"down_blocks.{i}.attentions.0.norm.weight" in tensors for i in range(levels))
    motion = tuple(f"down_blocks.{i}.motion_modules.0.temporal_transformer.norm.weight" in tensors
                   for i in range(levels))
    ctx_key = next((f"down_blocks.{i}.attentions.0.transformer_blocks.0.attn2.to_k.weight" for i in range(levels)
                    if attention[i]), "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight")
    if ctx_key not in tensors:
        raise CheckpointError(f"{source}: SparseCtrl tensor '{ctx_key}' is missing; the file is incomplete.")
    pes = {int(t.shape[1]) for k, t in tensors.items() if k.endswith(PE_SUFFIX) and t.dim() == 3}
    if len(pes) > 1:
        raise CheckpointError(f"{source}: positional encodings of different lengths {sorted(pes)}.")
    weight = tensors["conv_in.weight"]
    fmt = SparseCtrlFormat(mode=mode, channels=channels, layers_per_block=layers.pop(), attention=attention,
                           motion=motion, condition_channels=int(cond_in) - 1, embedding=embedding,
                           context_dim=int(tensors[ctx_key].shape[1]), pe_length=min(pes, default=DEFAULT_PE_LENGTH),
                           pe_stored=bool(pes), in_channels=int(weight.shape[1]), dtype=weight.dtype)
    _check_complete(tensors, fmt, source)
    return fmt


def expected_keys(fmt: SparseCtrlFormat) -> dict[str, tuple]:
    with torch.device("meta"):
        net = SparseControlNet(fmt)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _check_complete(tensors: dict, fmt: SparseCtrlFormat, source: str):
    expected = expected_keys(fmt)
    missing = [k for k in expected if k not in tensors]
    if missing:
        raise CheckpointError(f"{source}: {len(missing)} of {len(expected)} SparseCtrl tensors are missing (first: "
                              f"'{missing[0]}'); the file is incomplete or of an unknown variant.")
    unknown = [k for k in tensors if k not in expected]
    if unknown:
        raise CheckpointError(f"{source}: {len(unknown)} tensors that a SparseCtrl of this layout does not have "
                              f"(first: '{unknown[0]}'); an unsupported variant.")
    wrong = [(k, tuple(tensors[k].shape), s) for k, s in expected.items() if tuple(tensors[k].shape) != s]
    if wrong:
        k, got, want = wrong[0]
        raise CheckpointError(f"{source}: SparseCtrl tensor '{k}' has shape {list(got)}, expected {list(want)}.")


@dataclass(frozen=True)
class SparseCtrl:
    """A loaded SparseCtrl: its format, its weights as loaded, and where it came from. Never modified."""
    format: SparseCtrlFormat
    state_dict: dict
    source: str

    def build(self, dtype: torch.dtype | None = None, device=None, operations=None) -> SparseControlNet:
        """A network holding these weights (cast to ``dtype`` / moved to ``device`` when asked)."""
        with torch.device("meta"):
            net = SparseControlNet(self.format, operations=operations)
        state = {k: v.to(device=device, dtype=dtype if (dtype is not None and v.is_floating_point()) else v.dtype)
                 for k, v in self.state_dict.items()}
        net.load_state_dict(state, strict=True, assign=True)
        if not self.format.pe_stored:
            from .temporal import PositionalEncoding, sinusoidal_table
            for m in net.modules():
                if isinstance(m, PositionalEncoding):
                    m.pe = sinusoidal_table(m.length, m.pe.shape[-1]).to(
                        device=device, dtype=dtype if dtype is not None else self.format.dtype)
        return net.requires_grad_(False).eval()

    def summary(self) -> str:
        return f"file: {os.path.basename(self.source)}\n" + self.format.summary()


def sparse_ctrl_from_tensors(tensors: dict, source: str = "checkpoint") -> SparseCtrl:
    fmt = detect_sparse_ctrl(tensors, os.path.basename(source))
    return SparseCtrl(fmt, dict(tensors), source)


def _read_all(path: str) -> dict:
    if not path.lower().endswith(PICKLE_SUFFIXES):
        return read_tensors(path, what="SparseCtrl")
    # The safe reader (weights_only), unwrapping a top-level 'state_dict' or 'controlnet' (both accepted by the
    # original loaders); non-tensor entries ('animatediff_config') are dropped.
    if not os.path.isfile(path):
        raise CheckpointError(f"SparseCtrl file not found: {path}")
    data = _read_torch(path)
    for wrapper in ("state_dict", "controlnet"):
        if isinstance(data, dict) and isinstance(data.get(wrapper), dict):
            data = data[wrapper]
    if not isinstance(data, dict):
        raise CheckpointError(f"{os.path.basename(path)}: holds a {type(data).__name__}, not a dict of tensors")
    tensors = {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{os.path.basename(path)}: contains no tensors")
    return tensors


def load_sparse_ctrl(path: str) -> SparseCtrl:
    """Read and recognise a SparseCtrl file (.ckpt read without running pickled code, or .safetensors)."""
    if not path.lower().endswith(PICKLE_SUFFIXES):
        detect_sparse_ctrl(read_layout(path, what="SparseCtrl"), os.path.basename(path))  # header only first
    return sparse_ctrl_from_tensors(_read_all(path), source=path)


# ------------------------------------------------------------------------------------------------
# Keyframes

def parse_frame_indices(text: str, frames: int) -> list[int]:
    """``"0"``, ``"0, 15"``, ``"0, 8, 15"`` -> frame indices in ``[0, frames)``; negative ones count from the
    end (-1 is the last frame), as in the original's configs."""
    if not isinstance(text, str) or not text.strip():
        raise SparseCtrlInputError("frame_indices is empty: give the frame of each keyframe image, e.g. '0' or "
                                   "'0, 15'")
    out = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise SparseCtrlInputError(f"frame_indices '{text}': '{part}' is not a whole number") from None
        if not -frames <= value < frames:
            raise SparseCtrlInputError(f"frame index {value} is outside the clip of {frames} frames (use 0 to "
                                       f"{frames - 1}, or -1 for the last frame)")
        out.append(value % frames)
    seen = set()
    for value in out:
        if value in seen:
            raise SparseCtrlInputError(f"frame_indices '{text}': frame {value} is given twice")
        seen.add(value)
    return out


def keyframe_slots(indices: list[int], images: int, frames: int) -> torch.Tensor:
    """``(frames,)`` long tensor: for each frame, which keyframe image it shows, or -1 (no keyframe)."""
    if images != len(indices):
        raise SparseCtrlInputError(
            f"{images} keyframe image{'s' if images != 1 else ''} but {len(indices)} frame "
            f"ind{'ices' if len(indices) != 1 else 'ex'} ({', '.join(map(str, indices))}): give one frame index per "
            f"image, in the images' order")
    slots = torch.full((frames,), -1, dtype=torch.long)
    slots[torch.tensor(indices, dtype=torch.long)] = torch.arange(len(indices))
    return slots


def condition_from_slots(keyframes: torch.Tensor, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-frame condition (zeros where no keyframe is) and mask for the frames ``slots`` describes:
    ``keyframes`` (n, C, H, W) -> ``((F, C, H, W), (F, 1, H, W))``, as the original pipeline builds them."""
    frames = slots.shape[0]
    slots = slots.to(keyframes.device)
    present = slots >= 0
    condition = keyframes.new_zeros((frames,) + tuple(keyframes.shape[1:]))
    if bool(present.any()):
        condition[present] = keyframes[slots[present]]
    mask = present.to(keyframes.dtype).view(frames, 1, 1, 1).expand(frames, 1, *keyframes.shape[2:])
    return condition, mask


def fit_images(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(n, C, H, W)`` images cropped to the target's aspect ratio around their centre and resized
    (bilinear, antialiased) to ``height`` x ``width``, as the original's fixed-ratio crop and resize."""
    h, w = images.shape[-2:]
    if (h, w) == (height, width):
        return images
    if h * width > w * height:       # too tall: crop rows
        keep = max(1, round(w * height / width))
        top = (h - keep) // 2
        images = images[..., top:top + keep, :]
    elif h * width < w * height:     # too wide: crop columns
        keep = max(1, round(h * width / height))
        left = (w - keep) // 2
        images = images[..., :, left:left + keep]
    return F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
