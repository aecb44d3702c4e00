"""FreeInit (Wu et al., 2023): re-initialise the noise's low frequencies from the last result. Pure torch.

After an iteration produced ``z0``, the noisy latent it corresponds to is ``z0 + s * noise`` (the same
initial noise, ``s`` the starting noise level). Its low spatio-temporal frequencies are kept and the
high frequencies come from fresh noise; sampling again from that start gives temporally more
consistent videos.
"""

from __future__ import annotations

import torch

FILTERS = ("gaussian", "butterworth")


def low_pass_mask(frames: int, height: int, width: int, kind: str = "gaussian", spatial_cutoff: float = 0.25,
                  temporal_cutoff: float = 0.25, order: int = 4) -> torch.Tensor:
    """A centred (fft-shifted) low-pass mask over (frames, height, width), values in [0, 1]."""
    if not (0 < spatial_cutoff <= 1 and 0 < temporal_cutoff <= 1):
        raise ValueError("FreeInit cutoffs must be in (0, 1]")

    def axis(n):
        return (2 * torch.arange(n, dtype=torch.float64) / n - 1) if n > 1 else torch.zeros(1, dtype=torch.float64)

    t, h, w = torch.meshgrid(axis(frames), axis(height), axis(width), indexing="ij")
    distance = ((spatial_cutoff / temporal_cutoff) * t) ** 2 + h ** 2 + w ** 2
    if kind == "gaussian":
        mask = torch.exp(-distance / (2 * spatial_cutoff ** 2))
    elif kind == "butterworth":
        mask = 1 / (1 + (distance / spatial_cutoff ** 2) ** order)
    else:
        raise ValueError(f"unknown FreeInit filter '{kind}'; choose one of {', '.join(FILTERS)}")
    return mask.float()


def mix_frequencies(low_source: torch.Tensor, high_source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Low frequencies of ``low_source`` plus high frequencies of ``high_source``; both (F, C, H, W)."""
    dims = (0, 2, 3)
    low = torch.fft.fftshift(torch.fft.fftn(low_source.double(), dim=dims), dim=dims)
    high = torch.fft.fftshift(torch.fft.fftn(high_source.double(), dim=dims), dim=dims)
    m = mask.double().unsqueeze(1)  # (F, 1, H, W)
    mixed = low * m + high * (1 - m)
    out = torch.fft.ifftn(torch.fft.ifftshift(mixed, dim=dims), dim=dims).real
    return out.to(low_source.dtype)


def reinitialised_noise(z0: torch.Tensor, latent: torch.Tensor, noise: torch.Tensor, fresh: torch.Tensor,
                        noise_level: float, mask: torch.Tensor) -> torch.Tensor:
    """The noise tensor for the next iteration, for a sampler that starts from ``latent + s * noise``."""
    s = float(noise_level)
    start = mix_frequencies(z0 + s * noise, latent + s * fresh, mask)
    return (start - latent) / s
