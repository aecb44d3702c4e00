"""The whole batch as one small animation, for the preview while sampling (pure: torch, numpy, Pillow).

Each frame's latent goes to RGB the way the host's own latent preview (Latent2RGB) does it: a linear map of
the latent channels (the latent format's ``latent_rgb_factors``, plus its bias where it has one), then
``(rgb + 1) / 2`` clamped to [0, 1]. The frames are encoded as one animated WebP: small (latent-sized
frames), and both frontends show it in an <img>.
"""

from __future__ import annotations

import io

import numpy as np
import torch


def latents_to_rgb(latents: torch.Tensor, factors, bias=None) -> np.ndarray:
    """``(frames, channels, h, w)`` latents -> ``(frames, h, w, 3)`` uint8 RGB."""
    weight = torch.as_tensor(factors, dtype=torch.float32, device=latents.device)  # (channels, 3)
    rgb = torch.einsum("fchw,cr->fhwr", latents.float(), weight)
    if bias is not None:
        rgb = rgb + torch.as_tensor(bias, dtype=torch.float32, device=latents.device)
    return ((rgb + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()


def animated_webp(frames: np.ndarray, frame_rate: float = 8.0, quality: int = 80) -> bytes:
    """``(frames, h, w, 3)`` uint8 -> an animated WebP that loops forever."""
    from PIL import Image
    images = [Image.fromarray(frame) for frame in frames]
    out = io.BytesIO()
    images[0].save(out, format="WEBP", save_all=True, append_images=images[1:], loop=0,
                   duration=max(1, round(1000 / frame_rate)), quality=quality, method=0)
    return out.getvalue()
