"""The output formats VideoCombine offers, and their options. Pure: no ComfyUI import.

Animated images (GIF, WebP, APNG) and PNG sequences are written with Pillow alone. Video containers
(MP4, WebM, MOV) need PyAV (``av`` on PyPI, whose wheels bundle FFmpeg): they are listed only when
``av`` imports and its FFmpeg has the encoder, so a format the machine cannot write is never offered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger("animatediff")

try:  # PyAV is optional: without it the Pillow formats still work.
    import av  # noqa: F401
    import av.codec
    HAVE_AV = True
except Exception as _error:  # ImportError, or a broken binary wheel
    av = None
    HAVE_AV = False
    AV_IMPORT_ERROR = f"{type(_error).__name__}: {_error}"
else:
    AV_IMPORT_ERROR = None

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")

# Names of the options every format understands (values that do not apply to a format are ignored,
# since the node always sends every widget); any other name is a typo and is refused.
OPTION_NAMES = ("crf", "preset", "pix_fmt", "quality", "lossless", "codec_options")


@dataclass(frozen=True)
class FormatSpec:
    name: str                      # what the node's `format` widget shows, e.g. "video/h264-mp4"
    label: str
    extension: str                 # file extension; "" for a folder (PNG sequence)
    backend: str                   # "pillow" or "av"
    alpha: bool                    # can carry transparency
    codec: str | None = None       # FFmpeg encoder
    container: str | None = None   # FFmpeg muxer
    pix_fmts: tuple = ()           # accepted pix_fmt values; the first is the default
    alpha_pix_fmt: str | None = None
    crf_range: tuple | None = None  # (min, max) when the codec takes a crf
    audio_codecs: tuple = ()       # candidates, first available wins
    browser_playable: bool = True  # a <video> element in current browsers plays it
    options: frozenset = field(default_factory=frozenset)  # which of OPTION_NAMES apply

    @property
    def is_video(self) -> bool:
        return self.backend == "av"

    @property
    def is_sequence(self) -> bool:
        return self.extension == ""


_IMAGE_FORMATS = [
    FormatSpec("image/webp", "animated WebP", "webp", "pillow", alpha=True,
               options=frozenset({"quality", "lossless"})),
    FormatSpec("image/gif", "animated GIF", "gif", "pillow", alpha=True),
    FormatSpec("image/apng", "animated PNG", "png", "pillow", alpha=True),
    FormatSpec("image/png-sequence", "PNG image sequence (a folder)", "", "pillow", alpha=True),
]

_AV_OPTIONS = frozenset({"crf", "preset", "pix_fmt", "codec_options"})

# (spec, alternative encoders for the same format, first available wins)
_VIDEO_CANDIDATES = [
    (FormatSpec("video/h264-mp4", "MP4, H.264", "mp4", "av", alpha=False, codec="libx264", container="mp4",
                pix_fmts=("yuv420p", "yuv420p10le", "yuv444p", "yuv444p10le"), crf_range=(0, 51),
                audio_codecs=("aac",), options=_AV_OPTIONS), ("libx264",)),
    (FormatSpec("video/h265-mp4", "MP4, H.265/HEVC", "mp4", "av", alpha=False, codec="libx265", container="mp4",
                pix_fmts=("yuv420p", "yuv420p10le", "yuv444p", "yuv444p10le"), crf_range=(0, 51),
                audio_codecs=("aac",), browser_playable=False, options=_AV_OPTIONS), ("libx265",)),
    (FormatSpec("video/vp9-webm", "WebM, VP9", "webm", "av", alpha=True, codec="libvpx-vp9", container="webm",
                pix_fmts=("yuv420p", "yuv444p"), alpha_pix_fmt="yuva420p", crf_range=(0, 63),
                audio_codecs=("libopus", "libvorbis"), options=_AV_OPTIONS), ("libvpx-vp9",)),
    (FormatSpec("video/av1-webm", "WebM, AV1", "webm", "av", alpha=False, codec="libsvtav1", container="webm",
                pix_fmts=("yuv420p", "yuv420p10le"), crf_range=(0, 63),
                audio_codecs=("libopus", "libvorbis"), options=_AV_OPTIONS), ("libsvtav1", "libaom-av1")),
    (FormatSpec("video/prores-mov", "MOV, Apple ProRes", "mov", "av", alpha=True, codec="prores_ks", container="mov",
                pix_fmts=("yuv444p10le", "yuv422p10le"), alpha_pix_fmt="yuva444p10le",
                audio_codecs=("pcm_s16le",), browser_playable=False,
                options=frozenset({"preset", "pix_fmt", "codec_options"})), ("prores_ks",)),
]


def encoder_available(name: str) -> bool:
    if not HAVE_AV:
        return False
    try:
        av.codec.Codec(name, "w")
    except Exception:
        return False
    return True


def muxer_available(name: str) -> bool:
    if not HAVE_AV:
        return False
    try:
        import av.format
        av.format.ContainerFormat(name, "w")
    except Exception:
        return False
    return True


def _detect() -> dict[str, FormatSpec]:
    found = {spec.name: spec for spec in _IMAGE_FORMATS}
    if not HAVE_AV:
        log.info("PyAV (`pip install av`) is not installed: VideoCombine offers GIF, WebP, APNG and PNG only "
                 "(%s)", AV_IMPORT_ERROR)
        return found
    for spec, encoders in _VIDEO_CANDIDATES:
        if not muxer_available(spec.container):
            continue
        encoder = next((e for e in encoders if encoder_available(e)), None)
        if encoder is None:
            continue
        if encoder != spec.codec:
            spec = FormatSpec(**{**spec.__dict__, "codec": encoder})
        found[spec.name] = spec
    return found


FORMATS: dict[str, FormatSpec] = _detect()
UNAVAILABLE = [spec.name for spec, _ in _VIDEO_CANDIDATES if spec.name not in FORMATS]


def audio_encoder(spec: FormatSpec) -> str | None:
    return next((c for c in spec.audio_codecs if encoder_available(c)), None)


# The pix_fmt widget's choices: fixed, so a saved workflow means the same on every machine.
PIX_FMT_CHOICES = ("auto", "yuv420p", "yuv420p10le", "yuv444p", "yuv444p10le", "yuv422p10le", "yuva420p",
                   "yuva444p10le")
