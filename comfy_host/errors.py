"""What the user reads when something of this pack fails inside ComfyUI.

Both hosts report a failed node as ``exception_type: exception_message``, where the type is the bare
class name for builtin exceptions and ``module.path.ClassName`` for any other
(docs/comfyui-host.md §5.3). For this pack that reads
``comfyui-animatediff.motion_modules.checkpoint.CheckpointError: <message>``: the folder and module
path are noise to the user. So wherever the host calls into the pack (a node's FUNCTION, a wrapper or
callback registered on a model), the pack's own exceptions leave as their builtin base type
(``ValueError``, ``RuntimeError``, ...) with the same message; the original is kept as the
``__cause__``, so the host's log still shows where it came from. Exceptions of the host, of torch or
of any other package pass untouched (the host tells an out-of-memory error by its type, for one).

Inside the pack and in tests the precise types stay: only the boundary changes them.
"""

from __future__ import annotations

import functools
import inspect

# The package this pack was imported as: the folder name under custom_nodes, whatever it is.
PACKAGE = __name__.rsplit(".", 2)[0]


def is_ours(error: BaseException) -> bool:
    module = type(error).__module__ or ""
    return module == PACKAGE or module.startswith(PACKAGE + ".")


def builtin_base(error_type: type) -> type:
    """The first builtin exception type ``error_type`` derives from (``Exception`` at worst)."""
    for base in error_type.__mro__:
        if base.__module__ == "builtins" and issubclass(base, Exception):
            return base
    return Exception


def as_builtin(error: BaseException) -> BaseException:
    """``error`` as its builtin base type with the same message, the original as its cause; any error
    not of this pack unchanged."""
    if not is_ours(error) or not isinstance(error, Exception):
        return error
    base = builtin_base(type(error))
    try:
        plain = base(str(error))
    except Exception:  # a builtin whose constructor wants more (UnicodeDecodeError, ...)
        plain = RuntimeError(str(error))
    plain.__cause__ = error
    return plain


def plain_errors(function):
    """Decorate a function the host calls: this pack's exceptions leave it as builtin types."""
    if getattr(function, "__plain_errors__", False):
        return function

    @functools.wraps(function)
    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as error:
            plain = as_builtin(error)
            if plain is error:
                raise
            raise plain from error

    call.__plain_errors__ = True
    return call


def plain_node_errors(node_class):
    """Wrap a node class's FUNCTION with :func:`plain_errors` (instance, class or static method alike);
    returns the class."""
    name = node_class.FUNCTION
    raw = inspect.getattr_static(node_class, name)
    if isinstance(raw, (classmethod, staticmethod)):
        wrapped = type(raw)(plain_errors(raw.__func__))
    else:
        wrapped = plain_errors(raw)
    setattr(node_class, name, wrapped)
    return node_class

