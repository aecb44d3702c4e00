"""MotionModel: a loaded checkpoint (its format plus weights), ready to be placed into a UNet.

Memory: a ``.safetensors`` file is recognised from its header alone and then only the motion-module
tensors are read, one copy each; torch files are memory-mapped. The loaded tensors become the module
parameters as they are (no copy). A UNet in another dtype gets one cast copy, made once and kept.
Motion LoRAs never touch the loaded weights: a MotionModel with LoRAs shares every tensor with the
plain one except the LoRA-affected weights, which are merged into fresh tensors per dtype.

Dtypes: a module set has a *storage* dtype (its weights) and a *compute* dtype (its activations, and
its positional-encoding table, which is never stored in fp8). They are equal unless the weights stay in
a smaller dtype (fp8) and the layer classes cast them per call: the host's ``comfy.ops.manual_cast``
classes, passed as ``operations``, as ComfyUI does for its own UNet.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import OrderedDict

import torch

from .checkpoint import CheckpointError, check_finite, read_layout, read_tensors
from .formats import LAYOUT_DIFFUSERS, MotionFormat, analyse, expected_keys, file_keys
from .temporal import MotionModuleSet, PositionalEncoding, TorchOperations, sinusoidal_table

MAX_LORA_SETS = 4  # LoRA-merged module sets kept per loaded file (the plain ones are always kept)
COMPUTE_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
PE_SUFFIX = "pos_encoder.pe"
_default_operations = [TorchOperations]


def set_default_operations(operations) -> None:
    """The layer classes module sets are built from when ``operations`` is not given: torch's own, or
    the host's (comfy_host sets its ``MotionOperations``: ``comfy.ops.disable_weight_init`` with a Linear
    computing through motion_modules/kernels.py, which behave as torch's layers until the host's lowvram
    loading switches a layer to per-call casting). One set of classes per process,
    so a module set asked for with or without ``operations`` is the same object."""
    _default_operations[0] = operations or TorchOperations


def default_operations():
    return _default_operations[0]


def default_compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in COMPUTE_DTYPES else torch.float32


class MotionModel:
    """The MOTION_MODEL value passed between nodes. Never modified after loading: LoRAs make a new
    MotionModel that shares this one's weights and cache (cheap to make, cheap to keep)."""

    def __init__(self, fmt: MotionFormat, modules: MotionModuleSet, source: str, loras=(), notes=(),
                 _cache=None):
        self.format = fmt
        self.modules = modules            # the weights as loaded, in the file's dtype
        self.source = source
        self.loras = tuple(loras)         # ((MotionLoRA, strength, [notes]), ...) in the order applied
        self.notes = list(notes)
        if _cache is None:
            _cache = {"plain": {}, "lora": OrderedDict()}
            if fmt.dtype in COMPUTE_DTYPES:
                _cache["plain"][(fmt.dtype, fmt.dtype, default_operations())] = modules
        self._cache = _cache

    # -- weights per dtype ------------------------------------------------------------------------
    def _plain_in(self, dtype: torch.dtype, compute: torch.dtype, operations) -> MotionModuleSet:
        plain = self._cache["plain"]
        key = (dtype, compute, operations)
        if key not in plain:
            plain[key] = build_modules(self.format, self.modules.state_dict(), dtype, compute, operations)
        return plain[key]

    def _lora_key(self, plain_key):
        active = tuple((lora.uid, float(strength)) for lora, strength, _ in self.loras if strength != 0)
        return (plain_key, active) if active else None

    def modules_in(self, dtype: torch.dtype, compute_dtype: torch.dtype | None = None,
                   operations=None) -> MotionModuleSet:
        """The modules with weights stored in ``dtype`` (LoRAs merged in), computing in
        ``compute_dtype`` (default: ``dtype``, or fp32 for fp8 storage), built from ``operations``
        (default: :func:`default_operations`). The loaded ones when everything matches and no LoRA is
        active, else a copy made once and kept, so sampling never casts or merges weights per step
        (layers whose weights are stored in another dtype than they compute in cast them per call, as
        the host's own manual-cast layers do)."""
        compute = compute_dtype or default_compute_dtype(dtype)
        operations = operations or default_operations()
        key = self._lora_key((dtype, compute, operations))
        if key is None:
            return self._plain_in(dtype, compute, operations)
        cache = self._cache["lora"]
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        plain = self._plain_in(dtype, compute, operations)
        state = dict(plain.state_dict())
        original = self.modules.state_dict()
        deltas = {}
        for lora, strength, _ in self.loras:
            if strength == 0:
                continue
            for target, (up, down) in lora.pairs.items():
                if target not in state:
                    continue  # skipped when the LoRA was applied (mid block), see apply_motion_lora
                delta = strength * (up.to(torch.float32) @ down.to(torch.float32))
                deltas[target] = delta if target not in deltas else deltas[target] + delta
        for target, delta in deltas.items():
            # Merged in fp32 from the weights as loaded, then cast once (docs/motion-module-formats.md
            # §3.9), on the device where the other weights of this dtype are.
            device = state[target].device
            merged = original[target].to(device=device, dtype=torch.float32) + delta.to(device)
            state[target] = merged.to(dtype)
        modules = build_modules(self.format, state, compute_dtype=compute, operations=operations)
        cache[key] = modules
        while len(cache) > MAX_LORA_SETS:
            cache.popitem(last=False)
        return modules

    def nbytes_in(self, dtype: torch.dtype, compute_dtype: torch.dtype | None = None) -> int:
        """Bytes the modules take with weights in ``dtype`` and positional encodings in
        ``compute_dtype`` (computed without building them)."""
        size = torch.empty((), dtype=dtype).element_size()
        pe_size = torch.empty((), dtype=compute_dtype or default_compute_dtype(dtype)).element_size()
        return sum(t.numel() * ((pe_size if k.endswith(PE_SUFFIX) else size) if t.is_floating_point()
                                else t.element_size())
                   for k, t in self.modules.state_dict().items())

    # -- LoRAs ------------------------------------------------------------------------------------
    def with_lora(self, lora, strength: float, notes=()) -> "MotionModel":
        """A new MotionModel with ``lora`` added; this one is unchanged. Use
        :func:`motion_modules.lora.apply_motion_lora`, which checks that the LoRA fits first."""
        return MotionModel(self.format, self.modules, self.source, self.loras + ((lora, float(strength), list(notes)),),
                           self.notes, _cache=self._cache)

    # -- description ------------------------------------------------------------------------------
    def summary(self) -> str:
        lines = [f"file: {os.path.basename(self.source)}", self.format.summary()]
        lines += [f"note: {n}" for n in self.notes]
        for lora, strength, notes in self.loras:
            lines.append(f"motion LoRA: {os.path.basename(lora.source)} (strength {strength:g}, rank "
                         f"{lora.rank_text()}, {len(lora.pairs)} layers)")
            lines += [f"  note: {n}" for n in notes]
        return "\n".join(lines)

    def file_state_dict(self) -> dict:
        """The loaded weights under the file's own key names (for saving, and the round-trip tests)."""
        return file_keys(self.modules.state_dict(), self.format.layout)


def build_modules(fmt: MotionFormat, state_dict: dict, dtype: torch.dtype | None = None,
                  compute_dtype: torch.dtype | None = None, operations=None) -> MotionModuleSet:
    """Module objects holding ``state_dict``'s tensors (no copy when no cast is needed): weights cast
    to ``dtype``, positional encodings to ``compute_dtype`` (default: ``dtype`` when it is one that
    computes, else fp32), layers built from ``operations`` (default: :func:`default_operations`)."""
    with torch.device("meta"):
        modules = MotionModuleSet(fmt.down, fmt.mid, fmt.up, fmt.pe_length, fmt.pe_stored,
                                  operations=operations or default_operations())
    if compute_dtype is None and dtype is not None:
        compute_dtype = default_compute_dtype(dtype)
    if dtype is not None:
        state_dict = {k: (v.to(compute_dtype if k.endswith(PE_SUFFIX) else dtype) if v.is_floating_point() else v)
                      for k, v in state_dict.items()}
    modules.load_state_dict(state_dict, strict=True, assign=True)
    if not fmt.pe_stored:
        weight = next(v for k, v in state_dict.items() if v.is_floating_point() and not k.endswith(PE_SUFFIX))
        pe_dtype = compute_dtype or default_compute_dtype(weight.dtype)
        for m in modules.modules():
            if isinstance(m, PositionalEncoding):
                m.pe = sinusoidal_table(m.length, m.pe.shape[-1]).to(device=weight.device, dtype=pe_dtype)
    return modules.requires_grad_(False).eval()


def motion_model_from_tensors(tensors: dict, source: str = "checkpoint", config: dict | None = None,
                              loader=None) -> MotionModel:
    """Recognise and build a motion module from a state dict in any supported layout. ``tensors`` may
    hold meta tensors standing in for the file's; ``loader(keys)`` then reads the real ones."""
    name = os.path.basename(source)
    fmt, key_map = analyse(tensors, source=name, config=config)
    wanted = set(expected_keys(fmt))
    needed = {fk for ck, fk in key_map.items() if ck in wanted}
    if loader is not None and any(tensors[k].is_meta for k in needed):
        tensors = loader(needed)
        if not fmt.dtype.is_floating_point:
            # a header dtype the layout reader does not name (fp8): the tensors themselves tell
            fmt.dtype = next(tensors[fk].dtype for ck, fk in key_map.items() if ck.endswith("proj_in.weight"))
    # NaN / Inf weights would give black videos reported as success: refused here, once per load.
    check_finite({k: tensors[k] for k in sorted(needed)}, source)
    canonical = {}
    for ck, fk in key_map.items():
        if ck in wanted:
            t = tensors[fk]
            if t.is_floating_point() and t.dtype != fmt.dtype and not (
                    ck.endswith(PE_SUFFIX) and fmt.dtype not in COMPUTE_DTYPES and t.dtype in COMPUTE_DTYPES):
                # mixed-dtype files: cast once (noted in the summary); a positional encoding kept
                # beside fp8 weights keeps its precision
                t = t.to(fmt.dtype)
            canonical[ck] = t
    return MotionModel(fmt, build_modules(fmt, canonical), source)


def diffusers_config(path: str) -> dict | None:
    """The ``config.json`` beside a diffusers adapter file, if there is one."""
    candidate = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
    if not os.path.isfile(candidate):
        return None
    try:
        with open(candidate, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{os.path.basename(path)}: the config.json beside it cannot be read ({e})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{os.path.basename(path)}: the config.json beside it is not a JSON object")
    return config


def load_motion_model(path: str) -> MotionModel:
    """Read, recognise and build a motion-module file. Raises CheckpointError with a clear message."""
    layout = read_layout(path)
    config = None
    if any(".transformer_blocks.0.attn1." in k for k in itertools.islice(layout, 4096)):
        config = diffusers_config(path)
    model = motion_model_from_tensors(layout, source=path, config=config,
                                      loader=lambda keys: read_tensors(path, keys=keys))
    if config is not None and model.format.layout == LAYOUT_DIFFUSERS:
        model.notes.append("checked against the config.json beside it")
    return model
