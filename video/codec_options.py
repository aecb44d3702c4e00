"""VideoCombine's ``codec_options``: an allow-list of encoder options, nothing else reaches FFmpeg.

Encoders take options that write files (x264's ``stats`` and ``pass``, x265's ``csv`` and
``analysis-save``, ``passlogfile``, ``qpfile``, ``dump-yuv``, ...). Whoever can queue a prompt on a shared
server must not be able to create or overwrite files through them, so only the options people tune
(tune, profile, level, GOP and B-frame structure, rate control, psycho-visual and quality knobs) are
passed on, each with a value of a known shape (a number in a range, or one of a few words). A value never
holds a path separator. Anything else is refused with a message listing what is allowed.

``x264-params``, ``x265-params`` and ``svtav1-params`` are checked key by key against their own lists,
and rebuilt from the checked keys (so quoting or escapes FFmpeg would read differently cannot slip
through). Pure: no ComfyUI, no PyAV import.
"""

from __future__ import annotations

import re

__all__ = ["CodecOptionError", "allowed_options", "check_codec_options", "parse_codec_options"]


class CodecOptionError(ValueError):
    """A codec option that is not allowed or has a value of the wrong shape."""


# ---------------------------------------------------------------------------------------------
# Value shapes

_INT = re.compile(r"[-+]?\d{1,10}")
_NUM = re.compile(r"[-+]?(\d{1,10}(\.\d{0,8})?|\.\d{1,8})")
_RATE = re.compile(r"\d{1,10}(\.\d{1,6})?[kKmMgG]?")
PATH_SEPARATORS = ("/", "\\")


class Kind:
    text = "a value"

    def ok(self, value: str) -> bool:
        raise NotImplementedError


class Int(Kind):
    def __init__(self, lo, hi, words=()):
        self.lo, self.hi, self.words = lo, hi, tuple(words)
        self.text = f"a whole number from {lo} to {hi}" + (f" or {', '.join(self.words)}" if words else "")

    def ok(self, value):
        if value in self.words:
            return True
        return bool(_INT.fullmatch(value)) and self.lo <= int(value) <= self.hi


class Num(Kind):
    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi
        self.text = f"a number from {lo:g} to {hi:g}"

    def ok(self, value):
        return bool(_NUM.fullmatch(value)) and self.lo <= float(value) <= self.hi


class Bool(Kind):
    text = "0 or 1"
    WORDS = ("0", "1", "true", "false")

    def ok(self, value):
        return value.lower() in self.WORDS


class Choice(Kind):
    def __init__(self, *choices):
        self.choices = tuple(choices)
        self.text = "one of " + ", ".join(self.choices)

    def ok(self, value):
        return value in self.choices


class Either(Kind):
    def __init__(self, *kinds):
        self.kinds = kinds
        self.text = " or ".join(k.text for k in kinds)

    def ok(self, value):
        return any(k.ok(value) for k in self.kinds)


class Pair(Kind):
    """One number, or two joined by ':' (top-level options only) or ','."""

    def __init__(self, inner: Kind, colon: bool = True):
        self.inner, self.colon = inner, colon
        self.text = f"{inner.text}, or two such numbers as {'a:b or a,b' if colon else 'a,b'}"

    def ok(self, value):
        parts = re.split(r"[:,]" if self.colon else r",", value)
        return 1 <= len(parts) <= 2 and all(self.inner.ok(p) for p in parts)


class Words(Kind):
    """A comma-separated list of words from a set (x264 partitions, tune combinations)."""

    def __init__(self, *words):
        self.words = tuple(words)
        self.text = "a comma-separated list of " + ", ".join(self.words)

    def ok(self, value):
        parts = value.split(",")
        return bool(parts) and all(p in self.words for p in parts)


class Rate(Kind):
    text = "a bit rate such as 2M or 800k"

    def ok(self, value):
        return bool(_RATE.fullmatch(value))


class Tag(Kind):
    text = "four letters or digits"

    def ok(self, value):
        return bool(re.fullmatch(r"[A-Za-z0-9]{4}", value))


B = Bool()
H264_LEVELS = ("1", "1b", "1.0", "1.1", "1.2", "1.3", "2", "2.0", "2.1", "2.2", "3", "3.0", "3.1", "3.2", "4",
               "4.0", "4.1", "4.2", "5", "5.0", "5.1", "5.2", "6", "6.0", "6.1", "6.2")
HEVC_LEVELS = ("1", "1.0", "2", "2.0", "2.1", "3", "3.0", "3.1", "4", "4.0", "4.1", "5", "5.0", "5.1", "5.2", "6",
               "6.0", "6.1", "6.2", "8.5")

# Options of FFmpeg's generic encoder context, for every video encoder.
COMMON = {
    "g": Int(0, 100000),
    "keyint_min": Int(0, 100000),
    "bf": Int(0, 16),
    "refs": Int(0, 16),
    "threads": Int(0, 256, ("auto",)),
    "b": Rate(), "maxrate": Rate(), "minrate": Rate(), "bufsize": Rate(),
    "qmin": Int(-1, 69), "qmax": Int(-1, 1024),
}

# The options the ``*-params`` strings may hold, by x264's / x265's / SVT-AV1's own names.
X264_PARAMS = {
    "bframes": Int(0, 16), "b-adapt": Int(0, 2), "b-bias": Int(-100, 100),
    "b-pyramid": Choice("none", "strict", "normal", "0", "1", "2"), "ref": Int(1, 16),
    "keyint": Int(1, 100000, ("infinite",)), "min-keyint": Int(1, 100000), "scenecut": Int(-1, 100),
    "open-gop": B, "intra-refresh": B, "cabac": B, "deblock": Pair(Int(-6, 6), colon=False),
    "aq-mode": Int(0, 3), "aq-strength": Num(0, 3), "psy": B, "psy-rd": Pair(Num(0, 10), colon=False),
    "mbtree": B, "rc-lookahead": Int(0, 250), "trellis": Int(0, 2), "subme": Int(0, 11),
    "me": Choice("dia", "hex", "umh", "esa", "tesa"), "merange": Int(4, 1024),
    "partitions": Words("all", "none", "p8x8", "p4x4", "b8x8", "i8x8", "i4x4"),
    "analyse": Words("all", "none", "p8x8", "p4x4", "b8x8", "i8x8", "i4x4"),
    "direct": Choice("none", "spatial", "temporal", "auto"), "weightb": B, "weightp": Int(0, 2),
    "8x8dct": B, "fast-pskip": B, "dct-decimate": B, "mixed-refs": B, "chroma-me": B, "nr": Int(0, 100000),
    "deadzone-inter": Int(0, 32), "deadzone-intra": Int(0, 32), "qcomp": Num(0, 1), "qpmin": Int(0, 81),
    "qpmax": Int(0, 81), "qpstep": Int(0, 81), "ipratio": Num(1, 10), "pbratio": Num(1, 10),
    "chroma-qp-offset": Int(-12, 12), "threads": Int(0, 256, ("auto",)), "sliced-threads": B,
    "slices": Int(0, 1000), "lookahead-threads": Int(0, 256, ("auto",)), "level": Choice(*H264_LEVELS),
    "crf": Num(0, 51), "qp": Int(0, 81), "vbv-maxrate": Int(0, 10 ** 9), "vbv-bufsize": Int(0, 10 ** 9),
    "bitrate": Int(0, 10 ** 9), "ratetol": Num(0, 100), "aud": B, "nal-hrd": Choice("none", "vbr", "cbr"),
    "filler": B, "log": Int(-1, 3), "psnr": B, "ssim": B, "cqm": Choice("flat", "jvt"), "constrained-intra": B,
    "stitchable": B, "sync-lookahead": Int(-1, 250),
}
X265_PARAMS = {
    "log-level": Choice("none", "error", "warning", "info", "debug", "full", "-1", "0", "1", "2", "3", "4"),
    "bframes": Int(0, 16), "b-adapt": Int(0, 2), "b-pyramid": B, "bframe-bias": Int(-90, 100), "ref": Int(1, 16),
    "keyint": Int(-1, 100000), "min-keyint": Int(0, 100000), "scenecut": Either(Int(0, 100), B),
    "rc-lookahead": Int(0, 250), "lookahead-slices": Int(0, 16), "aq-mode": Int(0, 5), "aq-strength": Num(0, 3),
    "psy-rd": Num(0, 5), "psy-rdoq": Num(0, 50), "rdoq-level": Int(0, 2), "rd": Int(1, 6),
    "deblock": Pair(Int(-6, 6), colon=False), "sao": B, "selective-sao": Int(0, 4), "strong-intra-smoothing": B,
    "cutree": B, "weightp": B, "weightb": B, "me": Choice("dia", "hex", "umh", "star", "sea", "full", "0", "1", "2",
                                                           "3", "4", "5"),
    "subme": Int(0, 7), "merange": Int(0, 32768), "tu-intra-depth": Int(1, 4), "tu-inter-depth": Int(1, 4),
    "limit-tu": Int(0, 4), "ctu": Choice("16", "32", "64"), "min-cu-size": Choice("8", "16", "32"),
    "max-merge": Int(1, 5), "early-skip": B, "rect": B, "amp": B, "limit-modes": B, "limit-refs": Int(0, 3),
    "rskip": Int(0, 2), "tskip": B, "frame-threads": Int(0, 16), "wpp": B, "pmode": B, "pme": B,
    "level-idc": Choice(*HEVC_LEVELS), "high-tier": B, "repeat-headers": B, "aud": B, "hrd": B, "info": B,
    "hash": Int(0, 3), "open-gop": B, "radl": Int(0, 100), "intra-refresh": B, "qcomp": Num(0.5, 1),
    "qpstep": Int(0, 51), "ipratio": Num(0, 10), "pbratio": Num(0, 10), "cbqpoffs": Int(-12, 12),
    "crqpoffs": Int(-12, 12), "nr-intra": Int(0, 2000), "nr-inter": Int(0, 2000), "constrained-intra": B,
    "lossless": B, "cu-lossless": B, "crf": Num(0, 51), "qp": Int(0, 51), "vbv-maxrate": Int(0, 10 ** 9),
    "vbv-bufsize": Int(0, 10 ** 9), "bitrate": Int(0, 10 ** 9), "fades": B, "slices": Int(1, 16),
}
SVTAV1_PARAMS = {
    "tune": Int(0, 2), "film-grain": Int(0, 50), "film-grain-denoise": B, "enable-tf": Int(0, 2),
    "enable-overlays": B, "scd": B, "lookahead": Int(-1, 120), "keyint": Int(-2, 100000),
    "irefresh-type": Int(1, 2), "enable-qm": B, "qm-min": Int(0, 15), "qm-max": Int(0, 15),
    "sharpness": Int(-7, 7), "tile-rows": Int(0, 6), "tile-columns": Int(0, 4), "fast-decode": Int(0, 2),
    "enable-variance-boost": B, "variance-boost-strength": Int(1, 4), "variance-octile": Int(1, 8),
    "enable-cdef": B, "enable-dlf": Int(0, 2), "enable-restoration": B, "hierarchical-levels": Int(2, 5),
    "aq-mode": Int(0, 2), "lp": Int(0, 256),
}
PARAMS = {"x264-params": X264_PARAMS, "x265-params": X265_PARAMS, "svtav1-params": SVTAV1_PARAMS}

# Top-level options, per FFmpeg encoder (the generic ones above come with each).
ENCODER_OPTIONS = {
    "libx264": {
        "tune": Words("film", "animation", "grain", "stillimage", "psnr", "ssim", "fastdecode", "zerolatency"),
        "profile": Choice("baseline", "main", "high", "high10", "high422", "high444"),
        "level": Choice(*H264_LEVELS), "qp": Int(0, 81), "aq-mode": Either(Int(-1, 3), Choice(
            "none", "variance", "autovariance", "autovariance-biased")),
        "aq-strength": Num(0, 3), "psy": B, "psy-rd": Pair(Num(0, 10)), "rc-lookahead": Int(0, 250),
        "weightb": B, "weightp": Either(Int(0, 2), Choice("none", "simple", "smart")), "mbtree": B,
        "b-bias": Int(-100, 100), "b-pyramid": Choice("none", "strict", "normal"), "mixed-refs": B, "8x8dct": B,
        "fast-pskip": B, "aud": B, "deblock": Pair(Int(-6, 6)),
        "partitions": Words("all", "none", "p8x8", "p4x4", "b8x8", "i8x8", "i4x4"),
        "direct-pred": Choice("none", "spatial", "temporal", "auto"),
        "coder": Choice("default", "cavlc", "cabac", "vlc", "ac"), "b_strategy": Int(0, 2),
        "chromaoffset": Int(-12, 12), "noise_reduction": Int(0, 100000), "forced-idr": B, "intra-refresh": B,
        "motion-est": Choice("dia", "hex", "umh", "esa", "tesa"), "ssim": B,
        "x264-params": None,
    },
    "libx265": {
        "tune": Choice("psnr", "ssim", "grain", "zerolatency", "fastdecode", "animation"),
        "profile": Choice("main", "main10", "mainstillpicture", "msp", "main-intra", "main10-intra", "main444-8",
                          "main444-intra", "main444-stillpicture", "main422-10", "main422-10-intra", "main444-10",
                          "main444-10-intra", "main12", "main12-intra", "main422-12", "main422-12-intra",
                          "main444-12", "main444-12-intra"),
        "qp": Int(0, 51), "forced-idr": B,
        "x265-params": None,
    },
    "libvpx-vp9": {
        "deadline": Choice("best", "good", "realtime"), "cpu-used": Int(-9, 9), "row-mt": B,
        "tile-columns": Int(0, 6), "tile-rows": Int(0, 2), "frame-parallel": B, "auto-alt-ref": Int(0, 6),
        "lag-in-frames": Int(0, 25), "arnr-maxframes": Int(0, 15), "arnr-strength": Int(0, 6),
        "arnr-type": Choice("backward", "forward", "centered", "1", "2", "3"), "aq-mode": Int(0, 4),
        "tune-content": Choice("default", "screen", "film"), "enable-tpl": B, "undershoot-pct": Int(0, 100),
        "overshoot-pct": Int(0, 1000), "static-thresh": Int(0, 100000), "sharpness": Int(0, 7),
        "noise-sensitivity": Int(0, 4), "lossless": B, "tune": Choice("psnr", "ssim"),
        "profile": Choice("0", "1", "2", "3"),
    },
    "libsvtav1": {
        "svtav1-params": None,
    },
    "libaom-av1": {
        "cpu-used": Int(0, 8), "row-mt": B, "tile-columns": Int(0, 6), "tile-rows": Int(0, 6), "aq-mode": Int(0, 4),
        "enable-cdef": B, "lag-in-frames": Int(0, 70), "arnr-strength": Int(0, 6), "arnr-max-frames": Int(0, 15),
        "denoise-noise-level": Int(0, 50), "enable-restoration": B, "tune": Choice("psnr", "ssim"),
        "usage": Choice("good", "realtime", "allintra"), "enable-global-motion": B, "sharpness": Int(0, 7),
        "auto-alt-ref": B,
    },
    "prores_ks": {
        "profile": Choice("auto", "proxy", "lt", "standard", "hq", "4444", "4444xq", "-1", "0", "1", "2", "3", "4",
                          "5"),
        "vendor": Tag(), "bits_per_mb": Int(0, 8192), "mbs_per_slice": Int(1, 8),
        "quant_mat": Choice("auto", "proxy", "lt", "standard", "hq", "default"), "alpha_bits": Choice("0", "8", "16"),
    },
}
NOT_FOR_BFRAMELESS = {"prores_ks": ("bf", "refs")}
# Options that have a widget of their own.
WIDGETS = {"crf": "the crf input", "preset": "the preset input", "pix_fmt": "the pix_fmt input"}


def allowed_options(codec: str) -> dict:
    """{option name: value shape (None for a ``*-params`` string)} that ``codec`` takes from codec_options."""
    own = ENCODER_OPTIONS.get(codec)
    if own is None:
        return {}
    common = {k: v for k, v in COMMON.items() if k not in NOT_FOR_BFRAMELESS.get(codec, ())}
    return {**common, **own}


# ---------------------------------------------------------------------------------------------
# Parsing

_ENTRY = re.compile(r"\s*[A-Za-z][A-Za-z0-9_\-]*\s*=")


def parse_codec_options(text) -> dict[str, str]:
    """``"tune=animation, g=48"`` (or a dict) -> {"tune": "animation", "g": "48"}. Entries are separated
    by ',' ';' or new lines; a ',' not followed by ``name=`` belongs to the value (``deblock=-1,-1``,
    ``partitions=i8x8,i4x4``)."""
    if not text:
        return {}
    if isinstance(text, dict):
        return {str(k).strip(): str(v).strip() for k, v in text.items()}
    entries = []
    for line in re.split(r"[;\n\r]", str(text)):
        started = False
        for piece in line.split(","):
            if started and piece.strip() and not _ENTRY.match(piece):
                entries[-1] += "," + piece
                continue
            entries.append(piece)
            started = True
    options = {}
    for entry in entries:
        part = entry.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise CodecOptionError(f"codec_options entry '{part}' is not key=value "
                                   f"(example: 'tune=animation, g=48')")
        options[key.strip()] = value.strip()
    return options


def _listing(allowed: dict) -> str:
    return ", ".join(sorted(allowed))


def _check_separator(where: str, value: str):
    if any(s in value for s in PATH_SEPARATORS):
        raise CodecOptionError(
            f"codec_options: {where} holds a path separator ('/' or '\\'): options that name files are refused, "
            f"so nothing can be written outside the output folder")


def _check_params(codec: str, key: str, value: str) -> str:
    """A ``*-params`` value checked entry by entry and rebuilt as ``name=value:name=value``."""
    allowed = PARAMS[key]
    _check_separator(f"{key}={value!r}", value)
    if any(c in value for c in "'\"\0") or any(ord(c) < 32 for c in value):
        raise CodecOptionError(f"codec_options: {key} may not hold quotes or control characters: "
                               f"write it as name=value:name=value")
    out = {}
    for item in value.split(":"):
        item = item.strip()
        if not item:
            continue
        name, sep, val = item.partition("=")
        name = name.strip().lower().replace("_", "-")
        val = val.strip()
        negated = False
        if name not in allowed and name.startswith("no-") and name[3:] in allowed:
            name, negated = name[3:], True
        shape = allowed.get(name)
        if shape is None:
            raise CodecOptionError(
                f"codec_options: {key} entry '{name}' is not allowed ({codec} options that name files, and ones "
                f"this pack does not pass on, are refused); allowed in {key}: {_listing(allowed)}")
        if negated or not sep:
            takes_bool = isinstance(shape, Bool) or (isinstance(shape, Either) and any(
                isinstance(k, Bool) for k in shape.kinds))
            if not takes_bool or (negated and sep):
                raise CodecOptionError(f"codec_options: {key} entry '{item}' needs a value: {name}=<{shape.text}>")
            val = "0" if negated else "1"
        if not shape.ok(val):
            raise CodecOptionError(f"codec_options: {key} entry {name}={val!r} is not {shape.text}")
        out[name] = val
    return ":".join(f"{k}={v}" for k, v in out.items())


def check_codec_options(codec: str, options) -> dict[str, str]:
    """``options`` (text as the widget takes it, or a dict) checked against ``codec``'s allow-list;
    returns the options to hand to the encoder. Raises :class:`CodecOptionError` naming the option and
    listing what is allowed."""
    parsed = parse_codec_options(options)
    if not parsed:
        return {}
    allowed = allowed_options(codec)
    out = {}
    for key, value in parsed.items():
        if key in WIDGETS:
            raise CodecOptionError(f"codec_options: set {key} with {WIDGETS[key]}, not in codec_options")
        _check_separator(f"{key}={value!r}", value)
        if key not in allowed:
            what = "not an encoder option this pack passes on"
            if key in PARAMS:
                what = f"for another encoder (this format is written with {codec})"
            raise CodecOptionError(
                f"codec_options: '{key}' is {what}; options that could name files are refused. Allowed for "
                f"{codec}: {_listing(allowed) or 'none'}")
        shape = allowed[key]
        if shape is None:
            out[key] = _check_params(codec, key, value)
            if not out[key]:
                del out[key]
            continue
        if not shape.ok(value):
            raise CodecOptionError(f"codec_options: {key}={value!r} is not {shape.text}")
        out[key] = value
    return out
