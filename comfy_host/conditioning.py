"""Conditionings inside context windows: checked against the frame count, and cut to each window.

What the sampler evaluates per batch must follow the frames of a window, or the window gets another
window's (or no) conditioning without any error: ComfyUI's ``apply_control`` only logs a warning when
a ControlNet residual does not fit, and pops its lists empty on first use. So everything per frame is
either cut to the window or refused here, loudly:

* text conditioning (``c_crossattn``), SDXL's pooled ``y`` and every other model cond: one entry for
  all frames, or one per frame (prompt travel), cut to the window;
* conditioning masks (ConditioningSetMask, …): one mask, or one per frame, cut to the window;
* ControlNets and T2I-Adapters (the whole chain, each link with its own hint): one hint image for all
  frames, or one per frame. Where windows are cut at the conditioning level (current ComfyUI), each
  window gets its own copy of the chain holding that window's hint frames, so the ControlNet itself
  runs per window; on the 2024 host, whose ControlNet runs once per step on the whole batch, its
  residuals are cut to the window instead. A control whose residuals depend on the window (SparseCtrl)
  defers them there to the window itself (:class:`DeferredControls`).

Pure bookkeeping around the host's objects; the host's own classes compute everything.
"""

from __future__ import annotations

import torch


class ConditioningError(ValueError):
    pass


def _count_error(what: str, count: int, frames: int) -> ConditioningError:
    return ConditioningError(
        f"{what} has {count} entries for an animation of {frames} frames: give 1 (used for every frame) or "
        f"{frames} (one per frame). Make the image/mask batch match the latent batch (the frame count).")


def _per_frame(value: torch.Tensor, frames: int, what: str) -> bool:
    """True if ``value`` holds one entry per frame, False if one for all; else a clear error."""
    count = value.shape[0] if value.ndim > 0 else 1
    if count == frames:
        return True
    if count == 1:
        return False
    raise _count_error(what, count, frames)


def control_chain(control):
    """A ControlNet / T2I-Adapter and every one chained before it (ControlNetApply on top of another)."""
    while control is not None:
        yield control
        control = getattr(control, "previous_controlnet", None)


def _control_name(control) -> str:
    return type(control).__name__


def check_conditioning(conds, frames: int):
    """Refuse any per-frame input whose count is neither 1 nor ``frames``. ``conds``: the sampler's
    processed conditioning groups (lists of dicts), as its cond-batch function receives them."""
    for group in conds:
        for cond in group or ():
            for key, value in (cond.get("model_conds") or {}).items():
                inner = getattr(value, "cond", None)
                if isinstance(inner, torch.Tensor):
                    _per_frame(inner, frames, f"conditioning '{key}'")
            if isinstance(cond.get("mask"), torch.Tensor):
                _per_frame(cond["mask"], frames, "conditioning mask")
            for control in control_chain(cond.get("control")):
                own_check = getattr(control, "check_frame_count", None)
                if callable(own_check):  # a control with its own per-frame data (SparseCtrl's keyframe slots)
                    own_check(frames)
                    continue
                hint = getattr(control, "cond_hint_original", None)
                if isinstance(hint, torch.Tensor):
                    _per_frame(hint, frames, f"{_control_name(control)} hint image batch")
                for extra in getattr(control, "extra_concat_orig", None) or ():
                    if isinstance(extra, torch.Tensor):
                        _per_frame(extra, frames, f"{_control_name(control)} mask batch")


def _cut(value: torch.Tensor, index: torch.Tensor, frames: int) -> torch.Tensor:
    if value.ndim > 0 and value.shape[0] == frames:
        return value[index.to(value.device)]
    return value


class WindowControls:
    """Per-window copies of ControlNet chains, made with the host's own ``copy()`` and ``pre_run``, each
    holding its window's hint frames (and so its own resized-hint cache). Copies live for one sampling
    step: windows that repeat every step (static, batched schedules) reuse them, moving windows do not
    pile them up; ``clear()`` drops them when sampling ends."""

    def __init__(self):
        self._step = None
        self._current: dict = {}
        self._previous: dict = {}

    def clear(self):
        self._step, self._current, self._previous = None, {}, {}

    def for_window(self, control, window: tuple, index: torch.Tensor, frames: int, model, step: int):
        if step != self._step:
            self._step, self._previous, self._current = step, self._current, {}
        key = (id(control), window)
        entry = self._current.get(key) or self._previous.pop(key, None)
        if entry is None or entry[0] is not control:  # the original is kept, so its id is not reused
            entry = (control, _window_chain(control, index, frames, model))
        self._current[key] = entry
        return entry[1]


def _window_chain(control, index, frames, model):
    links = list(control_chain(control))
    copied = None
    for link in reversed(links):  # the first-applied ControlNet first
        window_copy = link.copy()
        if isinstance(link.cond_hint_original, torch.Tensor):
            window_copy.cond_hint_original = _cut(link.cond_hint_original, index, frames)
        if getattr(link, "extra_concat_orig", None):
            window_copy.extra_concat_orig = [_cut(e, index, frames) if isinstance(e, torch.Tensor) else e
                                             for e in link.extra_concat_orig]
        window_copy.set_previous_controlnet(copied)
        copied = window_copy
    # Start/end percent become sigmas as the sampler's own pre-run does it, for the whole chain.
    sampling = model.model_sampling
    copied.pre_run(model, lambda percent: sampling.percent_to_sigma(percent))
    return copied


def cut_conds(conds, window: list[int], frames: int, model, controls: WindowControls, step: int):
    """The sampler's conditioning groups as a sampling of only ``window``'s frames would see them."""
    index = torch.tensor(window, dtype=torch.long)
    key = tuple(window)

    def cut_cond(cond: dict) -> dict:
        out = dict(cond)
        model_conds = {}
        for name, value in (cond.get("model_conds") or {}).items():
            inner = getattr(value, "cond", None)
            if isinstance(inner, torch.Tensor) and inner.ndim > 0 and inner.shape[0] == frames:
                value = value._copy_with(_cut(inner, index, frames))
            model_conds[name] = value
        if "model_conds" in cond:
            out["model_conds"] = model_conds
        if isinstance(cond.get("mask"), torch.Tensor):
            out["mask"] = _cut(cond["mask"], index, frames)
        if cond.get("control") is not None:
            out["control"] = controls.for_window(cond["control"], key, index, frames, model, step)
        return out

    return [None if group is None else [cut_cond(c) for c in group] for group in conds]


def cut_unet_conds(c: dict, index: torch.Tensor, batch: int) -> dict:
    """The keyword arguments of one UNet call (2024 host), cut to a window's batch positions: tensors
    batched like the latents, and the ControlNet residuals (fresh lists: the UNet pops them)."""
    out = {}
    for key, value in c.items():
        if key == "control" and isinstance(value, dict):
            out[key] = {side: [_cut_residual(r, index, batch) for r in residuals]
                        for side, residuals in value.items()}
        elif isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == batch:
            out[key] = value[index.to(value.device)]
        else:
            out[key] = value
    return out


def _cut_residual(residual, index, batch):
    if not isinstance(residual, torch.Tensor) or residual.shape[0] == 1:
        return residual
    if residual.shape[0] != batch:
        raise ConditioningError(
            f"a ControlNet residual has batch {residual.shape[0]} in a UNet call of {batch} latents; it cannot "
            f"be cut to a context window. Give the ControlNet 1 hint image or one per frame.")
    return residual[index.to(residual.device)]


def merge_residuals(ours: dict, previous: dict | None) -> dict:
    """Residuals of two controls added position by position (the host's own merge rule): ``ours`` gets
    ``previous``'s values added (lists may be empty or hold None where a control has none)."""
    if previous is None:
        return ours
    for key in ("input", "middle", "output"):
        mine = ours.setdefault(key, [])
        for i, value in enumerate(previous.get(key, ())):
            if i >= len(mine):
                mine.append(value)
            elif value is not None:
                mine[i] = value if mine[i] is None else value + mine[i]
    return ours


class DeferredControls:
    """2024 host: controls whose residuals depend on the context window a frame is in (SparseCtrl, with its
    own motion modules) cannot compute them in ``get_control``, which the host calls once per UNet call on
    the whole batch, before the pack's UNet function wrapper cuts that call into windows. Such a control
    records here, for the UNet call about to run, an object whose ``residuals(index)`` computes its residuals
    for a window's batch positions (``index``; None: the whole batch); the wrapper takes the records for that
    call and adds each window's residuals to the window's cut ControlNet residuals, one window at a time."""

    def __init__(self):
        self._pending = []

    def add(self, deferred):
        self._pending.append(deferred)

    def take(self) -> list:
        taken, self._pending = self._pending, []
        return taken

    def clear(self):
        self._pending = []


def add_deferred_residuals(deferred: list, control: dict | None, index: torch.Tensor | None) -> dict | None:
    """``control`` (a UNet call's residuals, already cut to the window) with each deferred control's
    residuals for ``index`` added."""
    for entry in deferred:
        control = merge_residuals(entry.residuals(index), control)
    return control


class _Entry:
    def __init__(self, cond):
        self.cond = cond


def check_node_conditioning(conditioning, frames: int):
    """``check_conditioning`` for a CONDITIONING as nodes pass it ([[embedding, {options}], ...]), so
    a sampler node can refuse it before the first step."""
    processed = []
    for embedding, options in conditioning:
        model_conds = {"c_crossattn": _Entry(embedding)}
        if isinstance(options.get("pooled_output"), torch.Tensor):
            model_conds["pooled_output"] = _Entry(options["pooled_output"])
        processed.append({"model_conds": model_conds, "mask": options.get("mask"), "control": options.get("control")})
    check_conditioning([processed], frames)
