"""Nodes check their inputs against the INPUT_TYPES they declare, before any work.

ComfyUI checks widget values only in part: the 2024 host checks the ranges of required inputs only,
neither host refuses NaN or Infinity (``NaN < min`` is false), and a raw API prompt skips the frontend's
widgets. A node class marked ``@validated("Its Name")`` is checked by the rules it declares:

* INT: a whole number (not a bool) within min/max; FLOAT: a finite real number within min/max;
  BOOLEAN: true or false; STRING: text; a list of choices: one of them. Links (MODEL, IMAGE, ...) are
  not checked here, nor is a None value (an input fed by a link, when the prompt is queued).
* When the prompt is queued: a generated ``VALIDATE_INPUTS`` runs the check, then the node's own
  ``VALIDATE_INPUTS`` if it has one. It names (and so takes over from the host) only the inputs the
  hosts check short of the declaration: every FLOAT (NaN) and every optional widget (the 2024 host
  checks none), besides those the node's own check takes; the rest keep the host's own checks and
  messages. (The hosts report a failed VALIDATE_INPUTS once per input it names.) So a VideoCombine
  after the sampler refuses a NaN frame_rate before anything is sampled.
* When the node runs: the same check before its FUNCTION (values that came through links).

Messages name the node, the input and what is allowed: ``VideoCombine: frame_rate is nan; expected a
finite number from 0.1 to 240``. :func:`check_number` is the same check for one value, for nodes that
check numbers of their own (motion scales). Pure: no ComfyUI import.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers

__all__ = ["InputError", "check_inputs", "check_number", "validated"]


class InputError(ValueError):
    """A value that the node's own declaration does not allow."""


def _g(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _range(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f" from {_g(lo)} to {_g(hi)}"
    return f" of at least {_g(lo)}" if lo is not None else (f" of at most {_g(hi)}" if hi is not None else "")


def number_problem(value, lo=None, hi=None, integer: bool = False) -> str | None:
    """"is X; expected Y" when ``value`` is not a (whole / finite) number within [lo, hi], else None."""
    what = "a whole number" if integer else "a finite number"
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        return f"is {value!r:.80}; expected {what}{_range(lo, hi)}"
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too large for a float
        finite = integer
    if not finite or (lo is not None and value < lo) or (hi is not None and value > hi):
        return f"is {value!r:.80}; expected {what}{_range(lo, hi)}"
    return None


def check_number(node: str, name: str, value, lo=None, hi=None, integer: bool = False, what: str = ""):
    """``value`` if it is a (whole / finite) number in [lo, hi], else InputError naming node and input."""
    problem = number_problem(value, lo, hi, integer)
    if problem:
        raise InputError(f"{node}: {name} {problem}" + (f" ({what})" if what else ""))
    return value


def value_problem(spec, value) -> str | None:
    """What is wrong with ``value`` for one INPUT_TYPES entry ``(kind, {options})``; None when fine or
    when the entry is not a widget."""
    kind = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
    options = spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict) else {}
    if kind == "COMBO":
        kind = list(options.get("options") or [])
    if isinstance(kind, (list, tuple)):
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and value in kind:
            return None
        shown = ", ".join(map(str, list(kind)[:20])) + (", ..." if len(kind) > 20 else "")
        return f"is {value!r:.80}; expected one of {shown}"
    if kind in ("INT", "FLOAT"):
        return number_problem(value, options.get("min"), options.get("max"), integer=kind == "INT")
    if kind == "BOOLEAN" and not isinstance(value, bool):
        return f"is {value!r:.80}; expected true or false"
    if kind == "STRING" and not isinstance(value, str):
        return f"is {value!r:.80}; expected text"
    return None


def _declared(cls, section: str | None = None) -> dict:
    types = cls.INPUT_TYPES()
    return {name: spec for part in ("required", "optional") if section in (None, part)
            for name, spec in (types.get(part) or {}).items()}


def _is_widget(spec) -> bool:
    kind = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
    return isinstance(kind, (list, tuple)) or kind in ("INT", "FLOAT", "BOOLEAN", "STRING", "COMBO")


def check_inputs(node: str, cls, values: dict) -> None:
    """InputError listing every declared widget input in ``values`` whose value it does not allow."""
    declared = _declared(cls)
    problems = [f"{node}: {key} {problem}" for key, value in values.items()
                if value is not None and key in declared
                and (problem := value_problem(declared[key], value)) is not None]
    if problems:
        raise InputError("\n".join(problems))


def validated(node: str):
    """Class decorator: ``node`` (the name messages use) checks its declared inputs when the prompt is
    queued and again before its FUNCTION runs (see the module's docstring)."""
    def apply(cls):
        function = getattr(cls, cls.FUNCTION)
        signature = inspect.signature(function)

        @functools.wraps(function)
        def checked(*args, **kwargs):
            bound = signature.bind_partial(*args, **kwargs).arguments
            bound.update(bound.pop(next((p.name for p in signature.parameters.values()
                                         if p.kind is p.VAR_KEYWORD), ""), None) or {})
            check_inputs(node, cls, bound)
            return function(*args, **kwargs)
        setattr(cls, cls.FUNCTION, checked)

        own = getattr(cls, "VALIDATE_INPUTS", None)
        own_args = inspect.getfullargspec(own).args[1:] if own else []
        names = [n for n, spec in _declared(cls, "required").items() if isinstance(spec, (list, tuple)) and spec
                 and spec[0] == "FLOAT"] + [n for n, spec in _declared(cls, "optional").items() if _is_widget(spec)]

        def validate_inputs(cls_, **values):  # the hosts pass the inputs named in __signature__
            try:
                check_inputs(node, cls_, values)
            except InputError as error:
                return str(error)
            return own(**{k: v for k, v in values.items() if k in own_args}) if own else True
        P = inspect.Parameter
        validate_inputs.__signature__ = inspect.Signature(
            [P("cls", P.POSITIONAL_OR_KEYWORD)]
            + [P(n, P.POSITIONAL_OR_KEYWORD, default=None) for n in dict.fromkeys(names + own_args)])
        cls.VALIDATE_INPUTS = classmethod(validate_inputs)
        return cls
    return apply
