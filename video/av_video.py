"""MP4 / WebM / MOV written in-process with PyAV (FFmpeg's libraries; no ffmpeg binary, no subprocess).

Frames arrive one at a time; each is converted to Y'CbCr here (``colour``) and handed to the encoder,
so memory stays at one frame plus the encoder's own look-ahead. Optional audio is encoded alongside,
interleaved with the video, trimmed or padded with silence to the video's length. Pure: no ComfyUI
import.
"""

from __future__ import annotations

import logging
from fractions import Fraction

import numpy as np

from . import colour
from . import metadata as md
from .animated import EncodeError, StreamInfo
from .codec_options import CodecOptionError, check_codec_options, parse_codec_options  # noqa: F401
from .formats import PRESETS, FormatSpec, audio_encoder

log = logging.getLogger("animatediff")

# x264/x265 preset names mapped onto the speed knobs of the other encoders.
_SVT_PRESET = dict(zip(PRESETS, (12, 11, 10, 9, 8, 7, 5, 4, 3)))
_AOM_CPU_USED = dict(zip(PRESETS, (8, 8, 7, 6, 5, 4, 3, 2, 1)))
_VPX_CPU_USED = dict(zip(PRESETS, (8, 7, 6, 5, 4, 3, 2, 1, 0)))
_PRORES_PROFILE = {"yuv422p10le": "3", "yuv444p10le": "4", "yuva444p10le": "4"}  # HQ, 4444


COLOUR_TAGS = (("color_range", colour.AVCOL_RANGE_MPEG), ("colorspace", colour.AVCOL_SPC_BT709),
               ("color_primaries", colour.AVCOL_PRI_BT709), ("color_trc", colour.AVCOL_TRC_BT709))
_warned = set()


def _set(obj, name, value):
    """Set a PyAV property that older PyAV releases lack (then the tag is missing, the pixels are right)."""
    try:
        setattr(obj, name, value)
    except (AttributeError, TypeError, ValueError) as e:
        key = (type(obj).__name__, name)
        if key not in _warned:
            _warned.add(key)
            log.warning("this PyAV cannot set %s.%s (%s): upgrade av for complete colour tags", key[0], name, e)


def frame_rate_fraction(frame_rate: float) -> Fraction:
    """An exact rational rate: 8 -> 8/1, 29.97 -> 2997/100, 23.976 -> 2997/125, 30000/1001 stays."""
    return Fraction(frame_rate).limit_denominator(1001 * 1000)


def encoder_options(spec: FormatSpec, crf: int | None, preset: str | None, pix_fmt: str,
                    frames: int = 0) -> dict[str, str]:
    codec = spec.codec
    opts: dict[str, str] = {}
    preset = preset or "medium"
    if codec in ("libx264", "libx265"):
        opts["preset"] = preset
        if crf is not None:
            opts["crf"] = str(crf)
        if codec == "libx265":
            # x265 gives a one- or two-frame clip timestamps the MP4 muxer refuses ("pts/dts pair
            # unsupported") unless B-frames are off.
            opts["x265-params"] = "log-level=error" + (":bframes=0" if 0 < frames < 3 else "")
    elif codec == "libvpx-vp9":
        opts.update({"crf": str(crf if crf is not None else 31), "b": "0", "row-mt": "1",
                     "deadline": "realtime" if preset in PRESETS[:3] else "good",
                     "cpu-used": str(_VPX_CPU_USED[preset])})
    elif codec == "libsvtav1":
        # SVT-AV1's temporal filter shifts colours measurably (the mean of a channel by about 0.7/255 on
        # gradients); faithful colour matters more here than its small compression gain.
        opts.update({"crf": str(crf if crf is not None else 35), "preset": str(_SVT_PRESET[preset]),
                     "svtav1-params": "enable-tf=0"})
    elif codec == "libaom-av1":
        opts.update({"crf": str(crf if crf is not None else 35), "b": "0", "cpu-used": str(_AOM_CPU_USED[preset]),
                     "row-mt": "1"})
    elif codec == "prores_ks":
        opts.update({"profile": _PRORES_PROFILE.get(pix_fmt, "3"), "vendor": "apl0"})
    return opts


class AvWriter:
    def __init__(self, path: str, spec: FormatSpec, info: StreamInfo, pix_fmt: str, crf=None, preset=None,
                 codec_options=None, metadata=None, audio=None):
        import av
        import os
        self.av = av
        if spec.codec == "libsvtav1":
            os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints a banner at info level otherwise
        self.path = path
        self.spec = spec
        self.info = info
        self.pix_fmt = pix_fmt
        self.index = 0
        self.rate = frame_rate_fraction(info.frame_rate)
        self.width, self.height = colour.padded_size(info.width, info.height, pix_fmt)
        if (self.width, self.height) != (info.width, info.height):
            log.info("%s: %dx%d padded to %dx%d for %s", path, info.width, info.height, self.width, self.height,
                     pix_fmt)
        container_options = {}
        if spec.container in ("mp4", "mov"):
            # QuickTime "keys" metadata (read by the ComfyUI frontend) and the index before the data.
            container_options["movflags"] = "+use_metadata_tags+faststart"
        self.container = av.open(path, mode="w", format=spec.container, container_options=container_options)
        try:
            self._setup(spec, info, pix_fmt, crf, preset, codec_options, metadata, audio)
        except BaseException:
            self.abort()
            raise

    def _setup(self, spec, info, pix_fmt, crf, preset, codec_options, metadata, audio):
        for key, value in md.container_tags(metadata, with_comment=spec.container in ("mp4", "mov")).items():
            self.container.metadata[key] = value

        stream = self.container.add_stream(spec.codec, rate=self.rate)
        stream.width, stream.height, stream.pix_fmt = self.width, self.height, pix_fmt
        cc = stream.codec_context
        cc.time_base = 1 / self.rate
        for name, value in COLOUR_TAGS:
            _set(cc, name, value)
        if spec.codec == "libx265" and spec.container == "mp4":
            _set(cc, "codec_tag", "hvc1")  # what Apple players expect for HEVC in MP4
        if spec.codec in ("libvpx-vp9", "libaom-av1"):
            cc.bit_rate = 0  # constant quality
        try:  # checked already by combine.check_options; again here for direct callers
            self.user_options = check_codec_options(spec.codec, codec_options)
        except CodecOptionError as e:
            raise EncodeError(str(e)) from None
        options = encoder_options(spec, crf, preset, pix_fmt, info.total)
        # The chroma siting colour.py filters for, written into the stream (H.264 VUI, HEVC VUI, AV1
        # sequence header, Matroska ChromaSiting) so decoders upsample from the right place.
        options["chroma_sample_location"] = "left"
        for key, value in self.user_options.items():
            if key.endswith("-params") and options.get(key):  # x265-params, svtav1-params: the user's come last
                value = f"{options[key]}:{value}"
            options[key] = value
        stream.options = options
        self.stream = stream
        self._opened = False

        self.audio_stream = None
        self.audio = None
        if audio is not None:
            self._add_audio(audio)

    # -- audio --------------------------------------------------------------------------------
    def _add_audio(self, audio):
        codec = audio_encoder(self.spec)
        if codec is None:
            raise EncodeError(f"this FFmpeg has no audio encoder for {self.spec.name} "
                              f"(tried {', '.join(self.spec.audio_codecs)})")
        waveform, rate = audio
        channels = waveform.shape[0]
        layout = "mono" if channels == 1 else "stereo"
        if channels > 2:
            log.info("%s: %d audio channels mixed down to stereo", self.path, channels)
        encoder = self.av.codec.Codec(codec, "w")
        out_rate = rate
        rates = getattr(encoder, "audio_rates", None)
        if rates and rate not in rates:
            out_rate = 48000 if 48000 in rates else max(rates)
        self.audio_stream = self.container.add_stream(codec, rate=out_rate)
        self.audio_stream.layout = layout
        self.audio_in_rate = rate
        self.audio_layout = layout
        total_seconds = self.info.total / self.info.frame_rate
        needed = int(round(total_seconds * rate))
        have = waveform.shape[1]
        if have >= needed:
            waveform = waveform[:, :needed]
        else:
            waveform = np.concatenate([waveform, np.zeros((channels, needed - have), np.float32)], axis=1)
        if channels > 2:
            waveform = np.stack([waveform[0::2].mean(axis=0), waveform[1::2].mean(axis=0)])
        self.audio = np.ascontiguousarray(waveform, dtype=np.float32)
        self.audio_sent = 0

    def _send_audio_until(self, samples: int):
        if self.audio is None:
            return
        samples = min(samples, self.audio.shape[1])
        if samples <= self.audio_sent:
            return
        chunk = self.audio[:, self.audio_sent:samples]
        frame = self.av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=self.audio_layout)
        frame.sample_rate = self.audio_in_rate
        frame.pts = self.audio_sent
        frame.time_base = Fraction(1, self.audio_in_rate)
        self.audio_sent = samples
        for packet in self.audio_stream.encode(frame):
            self.container.mux(packet)

    # -- video --------------------------------------------------------------------------------
    def _open(self):
        cc = self.stream.codec_context
        settings = dict(self.stream.options or {})
        import av.logging
        previous = av.logging.get_level()
        av.logging.set_level(av.logging.ERROR)  # briefly: to capture why an encoder refuses its settings
        try:
            with av.logging.Capture() as logs:
                try:
                    cc.open(strict=False)
                except Exception as e:
                    said = "; ".join(line.strip() for _, _, line in logs if line.strip()) or str(e)
                    raise EncodeError(f"the {self.spec.codec} encoder refused its settings "
                                      f"({', '.join(f'{k}={v}' for k, v in settings.items())}): {said}") from e
        finally:
            av.logging.set_level(previous)
        left = dict(cc.options or {})
        unknown = [k for k in self.user_options if k in left]
        if unknown:
            raise EncodeError(f"unknown codec option{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(repr(k) for k in unknown)} for the {self.spec.codec} encoder")
        self._opened = True

    def add(self, rgb: np.ndarray):
        if not self._opened:
            self._open()
        if rgb.shape[-1] == 4 and not colour.PIX_FMT_LAYOUT[self.pix_fmt][3]:
            rgb = rgb[..., :3]
        frame = self.av.VideoFrame(self.width, self.height, self.pix_fmt)
        colour.fill_frame(frame, colour.prepare(rgb, self.pix_fmt))
        frame.pts = self.index
        frame.time_base = self.stream.codec_context.time_base
        # Some encoders (ProRes) write the frame's tags rather than the codec context's.
        for name, value in COLOUR_TAGS:
            _set(frame, name, value)
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.index += 1
        if self.audio is not None:
            self._send_audio_until(int(round(self.index / self.info.frame_rate * self.audio_in_rate)))

    def close(self):
        if not self._opened:
            self._open()
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        if self.audio is not None:
            self._send_audio_until(self.audio.shape[1])
            for packet in self.audio_stream.encode(None):
                self.container.mux(packet)
        self.container.close()

    def abort(self):
        try:
            self.container.close()
        except Exception:
            pass
