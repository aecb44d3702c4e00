"""The animated preview while sampling: every few hundred milliseconds, the sampler's current prediction of
the whole batch (all frames) sent to the browser as one small animated WebP, shown on the sampling node by
web/sampling_preview.js.

It is a post-CFG function on the animated clone (both hosts call those with the CFG-combined prediction of
the whole batch, after windows are fused), so it works under KSampler, Animate Sampler and any other
sampler. Off until a frontend switches it on (the setting "AnimateDiff: animated preview while sampling"
posts to ``/animatediff/preview``); off, it returns at its first line. The host's own one-frame preview is
unchanged.
"""

from __future__ import annotations

import base64
import logging
import time

from ..video.preview import animated_webp, latents_to_rgb

log = logging.getLogger("animatediff")

EVENT = "animatediff.preview"
ROUTE = "/animatediff/preview"
MIN_INTERVAL_S = 0.25   # at most four previews a second, whatever the sampler's speed
MAX_FRAMES = 256        # a longer batch is previewed by its first 256 frames
MAX_SIDE = 96           # latent pixels; larger latents are subsampled (the host previews at this scale too)


class PreviewSwitch:
    """Whether the preview is on, and when it was last sent (one per server process)."""

    def __init__(self):
        self.enabled = False
        self.last_sent = 0.0
        self.last_prompt = None  # a new prompt gets its first preview at once


SWITCH = PreviewSwitch()


def register_route():
    """``GET``/``POST /animatediff/preview`` ({"enabled": bool}) on the host's server, where one runs."""
    try:
        from server import PromptServer
        from aiohttp import web
    except ImportError:  # imported without a server (tests in-process, scripts)
        return
    routes = getattr(getattr(PromptServer, "instance", None), "routes", None)
    if routes is None:
        return

    @routes.get(ROUTE)
    async def get_preview(request):
        return web.json_response({"enabled": SWITCH.enabled})

    @routes.post(ROUTE)
    async def set_preview(request):
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("enabled"), bool):
            return web.json_response({"error": 'expected JSON {"enabled": true or false}'}, status=400)
        SWITCH.enabled = body["enabled"]
        return web.json_response({"enabled": SWITCH.enabled})


def _send(denoised, latent_format):
    from server import PromptServer
    server = PromptServer.instance
    frames = denoised[:MAX_FRAMES]
    step = max(1, -(-max(frames.shape[-2:]) // MAX_SIDE))
    rgb = latents_to_rgb(frames[:, :, ::step, ::step], latent_format.latent_rgb_factors,
                         getattr(latent_format, "latent_rgb_factors_bias", None))
    data = {"node": server.last_node_id, "prompt_id": getattr(server, "last_prompt_id", None),
            "frames": int(frames.shape[0]), "image": base64.b64encode(animated_webp(rgb)).decode("ascii")}
    server.send_sync(EVENT, data, server.client_id)


def post_cfg_preview(args):
    """Post-CFG function: sends the preview when it is on and due; returns the prediction unchanged."""
    denoised = args["denoised"]
    if not SWITCH.enabled:
        return denoised
    from server import PromptServer
    prompt = getattr(PromptServer.instance, "last_prompt_id", None)
    now = time.monotonic()
    if denoised.dim() != 4 or (prompt == SWITCH.last_prompt and now - SWITCH.last_sent < MIN_INTERVAL_S):
        return denoised
    latent_format = getattr(args.get("model"), "latent_format", None)
    if getattr(latent_format, "latent_rgb_factors", None) is None:
        return denoised
    SWITCH.last_sent, SWITCH.last_prompt = now, prompt
    try:
        _send(denoised, latent_format)
    except Exception as error:  # a preview must never stop sampling
        log.warning("AnimateDiff: animated preview not sent: %s", error)
    return denoised
