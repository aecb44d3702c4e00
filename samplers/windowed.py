"""Running one model call as several context-window calls and fusing their results. Pure torch.

The model call sees ``(chunks * frames, ...)``: ``chunks`` clips (cond/uncond) of the same frames.
Each window keeps all chunks together, so one window is one call of ``chunks * len(window)`` latents
and per-clip statistics (cross-frame GroupNorm) never mix cond and uncond.
"""

from __future__ import annotations

from typing import Callable, Sequence, Union

import torch

from .context import ContextOptions

Outputs = Union[torch.Tensor, Sequence[torch.Tensor]]


def window_batch_index(window: list[int], frames: int, chunks: int) -> torch.Tensor:
    """Batch positions of ``window``'s frames in every chunk, chunk-major like the host's batch."""
    w = torch.tensor(window, dtype=torch.long)
    return torch.cat([w + c * frames for c in range(chunks)])


def slice_batch(value, index: torch.Tensor | None, batch: int):
    """``value`` restricted to ``index`` if it is a tensor batched like the latents, else unchanged
    (also for ``index`` None: the whole batch)."""
    if index is not None and isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == batch:
        return value[index.to(value.device)]
    return value


def run_in_windows(call: Callable[[torch.Tensor, torch.Tensor | None], Outputs], x: torch.Tensor, chunks: int,
                   options: ContextOptions, step: int, on_window: Callable[[int, int], None] | None = None) -> Outputs:
    """``call(x_window, batch_index)`` for each window, fused by the options' weights.

    ``call`` returns one tensor, or a list of tensors, batched like its input (chunk-major); the
    result has the same structure, batched like ``x``. With a single window covering every frame,
    ``call`` runs once on ``x`` itself with ``batch_index`` None, so the result is bit-identical to
    a run without context windows.
    """
    frames = x.shape[0] // chunks
    windows = options.windows(frames, step)
    if len(windows) == 1 and windows[0] == list(range(frames)):
        return call(x, None)
    total = torch.zeros(frames, dtype=torch.float32, device=x.device)
    fused = None
    single = False
    for i, window in enumerate(windows):
        index = window_batch_index(window, frames, chunks).to(x.device)
        out = call(x[index], index)  # the one copy a window needs: its frames of every chunk, as one batch
        single = isinstance(out, torch.Tensor)
        outs = [out] if single else list(out)
        weight = options.weights(window, frames).to(x.device)
        if fused is None:
            fused = [torch.zeros((x.shape[0],) + tuple(o.shape[1:]), dtype=torch.float32, device=o.device) for o in outs]
            dtypes = [o.dtype for o in outs]
        for total_out, o in zip(fused, outs):
            _accumulate(total_out, o, window, weight.to(o.device), frames, chunks)
        total.index_add_(0, torch.tensor(window, device=x.device), weight)
        if on_window is not None:
            on_window(i + 1, len(windows))
    results = []
    for total_out, dtype in zip(fused, dtypes):
        norm = total.repeat(chunks).to(total_out.device).view((-1,) + (1,) * (total_out.ndim - 1))
        results.append(total_out.div_(norm).to(dtype))  # in place; no copy when the output is fp32
    return results[0] if single else results


def _accumulate(total_out: torch.Tensor, out: torch.Tensor, window: list[int], weight: torch.Tensor, frames: int,
                chunks: int):
    """``total_out[rows of window] += out * weight`` (per frame), in fp32. A window of consecutive frames
    (every schedule's windows, except where looped windows wrap or stride > 1) is a slice of each chunk:
    the product is accumulated in place there (no product tensor, no index); others go through index_add_."""
    length = len(window)
    shape = (-1,) + (1,) * (out.ndim - 1)
    if window == list(range(window[0], window[0] + length)):
        w = weight.view(shape)
        for c in range(chunks):
            start = c * frames + window[0]
            total_out[start:start + length].addcmul_(out[c * length:(c + 1) * length].float(), w)
        return
    index = window_batch_index(window, frames, chunks).to(out.device)
    total_out.index_add_(0, index, out.float() * weight.repeat(chunks).view(shape))
