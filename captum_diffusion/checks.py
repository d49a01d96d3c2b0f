"""Argument checks shared by every public entry point: each check is written once, here.

Every function returns the checked (and normalised) value or raises ``ValueError`` / ``TypeError`` whose message
names the argument, shows the value and says what would be valid. This module imports nothing of the project.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from numbers import Integral, Real


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def positive_int(value, name: str) -> int:
    """``value`` as an ``int >= 1``."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def optional_positive_int(value, name: str) -> int | None:
    """``None`` or ``positive_int(value)``."""
    if value is None:
        return None
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    return int(value)


def int_at_least(value, minimum: int, name: str) -> int:
    """``value`` as an ``int >= minimum``."""
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def seed(value, name: str = "seed") -> int:
    """A non-negative int seed (``torch.Generator().manual_seed`` takes it)."""
    if not _is_int(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return int(value)


def finite_number(value, name: str, *, low: float | None = None, high: float | None = None,
                  low_open: bool = False) -> float:
    """``value`` as a finite float, optionally within ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    if too_low or (high is not None and value > high):
        left = "(" if low_open else "["
        raise ValueError(f"{name} must lie in {left}{'-inf' if low is None else low}, "
                         f"{'inf' if high is None else high}], got {value!r}")
    return value


#: The largest classifier-free guidance scale accepted: typical scales are 1..20; far above, the latents overflow,
#: the images come back black and attention maps NaN.
MAX_GUIDANCE_SCALE = 1000.0


def guidance_scale(value, name: str = "guidance_scale") -> float | None:
    """``None`` (the pipeline's default) or a classifier-free guidance scale in ``[0, MAX_GUIDANCE_SCALE]``."""
    return optional_finite_number(value, name, low=0.0, high=MAX_GUIDANCE_SCALE)


def optional_finite_number(value, name: str, **bounds) -> float | None:
    """``None`` or ``finite_number(value, name, **bounds)``."""
    return None if value is None else finite_number(value, name, **bounds)


def one_of(value, choices: Iterable, name: str):
    """``value`` if it is one of ``choices``."""
    choices = tuple(choices)
    if not isinstance(value, (str, int, float, type(None))) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def string_list(value, name: str, *, allow_single: bool = True) -> list[str]:
    """A str (when ``allow_single``) or a sequence of str, as a list of ``str``."""
    if isinstance(value, str):
        if allow_single:
            return [str(value)]
        raise TypeError(f"{name} must be a sequence of str, not a single str: wrap it, [{value!r}]")
    if isinstance(value, (bytes, bytearray)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be {'a str or ' if allow_single else ''}a sequence of str, "
                        f"got {type(value).__name__}")
    items = list(value)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(item).__name__} {item!r}")
    return [str(item) for item in items]


def text_template(template, name: str = "text_template") -> str:
    """A ``str.format`` template with exactly one positional slot ``{}``, e.g. ``"a photo of a {}"``."""
    import string

    if not isinstance(template, str):
        raise TypeError(f"{name} must be a str with one '{{}}' slot, got {type(template).__name__}")
    try:
        slots = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as error:
        raise ValueError(f"{name} {template!r} is not a valid format string ({error})") from None
    if slots != [""]:
        raise ValueError(f"{name} must contain exactly one empty slot '{{}}' where the word goes (no names, no "
                         f"indices), got {template!r}")
    return template


def index(value, length: int, name: str) -> int:
    """An int index into a sequence of ``length`` items (negative counts from the end), as ``0..length-1``."""
    if not _is_int(value) or not -length <= value < length:
        raise ValueError(f"{name} must be an int in {-length}..{length - 1}, got {value!r}")
    return int(value) % length


def placement(device, dtype) -> dict:
    """The ``.to(...)`` keyword arguments among ``device`` / ``dtype`` that were given (not None), checked: ``device``
    a ``torch.device`` or a device string / index torch knows (``"cpu"``, ``"cuda:0"``), ``dtype`` a ``torch.dtype``."""
    import torch

    if device is not None:
        if isinstance(device, bool) or not isinstance(device, (str, int, torch.device)):
            raise TypeError(f"device must be a torch.device, a str such as 'cpu' or 'cuda:0', or None; "
                            f"got {type(device).__name__} {device!r}")
        try:
            parsed = torch.device(device)
        except (RuntimeError, ValueError, TypeError) as error:
            raise ValueError(f"device {device!r} is not a torch device ({error})") from None
        if parsed.type == "cuda" and (not torch.cuda.is_available()
                                      or (parsed.index or 0) >= torch.cuda.device_count()):
            raise ValueError(f"device {device!r} is not available here (CUDA available: {torch.cuda.is_available()}, "
                             f"{torch.cuda.device_count() if torch.cuda.is_available() else 0} device(s))")
        if parsed.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device {device!r} is not available here (no MPS backend)")
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype (e.g. torch.float16) or None, got {type(dtype).__name__} "
                        f"{dtype!r}")
    return {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}


def sequence(value, name: str) -> Sequence:
    """``value`` as a list, refusing a str (a common slip for a list of words)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a sequence, got {type(value).__name__} {value!r}")
    return list(value)


def random_state(value, name: str = "seed"):
    """A seed for numpy / lime / sklearn ``random_state``: ``None``, a ``numpy.random.RandomState`` or a seed int
    in ``0..2**32 - 1``."""
    import numpy as np

    if value is None or isinstance(value, np.random.RandomState):
        return value
    if not _is_int(value) or not 0 <= value < 2**32:
        raise ValueError(f"{name} must be an int in 0..2**32-1, a numpy.random.RandomState or None, got {value!r}")
    return int(value)


def numeric_array(value, name: str, *, finite: bool = True):
    """``value`` (array-like or torch tensor) as a float64 numpy array; ``TypeError`` naming ``name`` when it is not
    numeric (strings, objects, ragged lists), ``ValueError`` when ``finite`` and it holds NaN or inf."""
    import numpy as np

    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be an array of numbers, got {type(value).__name__} {value!r}")
    try:
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise TypeError
        array = array.astype(np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of numbers (bool, int or float), got {type(value).__name__} "
                        f"{_short_repr(value)}") from None
    if finite and not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite; it holds {int((~np.isfinite(array)).sum())} NaN / inf value(s): "
                         f"{_short_repr(value)}")
    return array


def binary_matrix(value, n_columns: int, name: str, column: str = "column"):
    """0/1 (or bool) masks as a bool numpy array ``(n, n_columns)``; one row ``(n_columns,)`` becomes ``(1, n_columns)``.

    ``column`` names what a column stands for in messages (``"word"``, ``"segment"``)."""
    import numpy as np

    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a 0/1 array (n, {n_columns}), got {type(value).__name__} "
                        f"{_short_repr(value)}") from None
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != n_columns:
        raise ValueError(f"{name} must have shape (n, {n_columns}) (one 0/1 {column} per column), got "
                         f"{np.shape(value)}")
    if array.dtype != bool:
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be numeric 0/1 or bool, got dtype {array.dtype}")
        outside = ~np.isin(array, (0, 1))
        if outside.any():
            raise ValueError(f"{name} must contain only 0 and 1 ({column} absent/present), got values such as "
                             f"{array[outside][:3]}")
        array = array.astype(bool)
    return array


def shortened(text: str, limit: int = 80) -> str:
    """``text`` cut to at most ``limit`` characters, ending in "..." when cut (for messages and tables)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short_repr(value, limit: int = 80) -> str:
    return shortened(repr(value), limit)
