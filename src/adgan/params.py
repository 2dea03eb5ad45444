"""What each detector parameter accepts, checked before any work.

Every detector lists its parameters' constraints in ``param_constraints`` (as
scikit-learn's estimators do in ``_parameter_constraints``; ours are small constraint types
of our own, under another name, so that scikit-learn's checks do not read them as theirs);
``check_params`` is
called first thing in ``fit``, and presets check their values against the same
constraints when they are read. A value outside them is a ``ConfigError`` that names the
parameter and what it accepts::

    lr_z: expected a number >= 0, got -0.5
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from adgan.errors import ConfigError


class Constraint:
    """A set of accepted values: ``accepts(value)`` and a phrase for messages."""

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class _Range(Constraint):
    kind = ""
    types: tuple[type, ...] = ()

    def __init__(self, ge=None, gt=None, le=None, lt=None):
        self.ge, self.gt, self.le, self.lt = ge, gt, le, lt

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool | np.bool_) or not isinstance(value, self.types):
            return False
        if isinstance(value, numbers.Real) and not math.isfinite(value):
            return False
        return not (
            (self.ge is not None and value < self.ge)
            or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le)
            or (self.lt is not None and value >= self.lt)
        )

    def describe(self) -> str:
        lo = f"[{self.ge}" if self.ge is not None else f"({self.gt}" if self.gt is not None else ""
        hi = f"{self.le}]" if self.le is not None else f"{self.lt})" if self.lt is not None else ""
        if lo and hi:
            return f"{self.kind} in {lo}, {hi}"
        bound = [
            f"{op} {v}"
            for op, v in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
            if v is not None
        ]
        return " ".join([self.kind, *bound])


class Int(_Range):
    """Whole numbers (Python or numpy integers; not booleans) within the bounds."""

    kind = "an integer"
    types = (numbers.Integral,)


class Real(_Range):
    """Finite numbers, integers included (not booleans), within the bounds."""

    kind = "a number"
    types = (numbers.Real,)


class Float(_Range):
    """Finite floating-point numbers (not integers) within the bounds: where an integer
    means something else, as a count beside a fraction."""

    kind = "a fraction"
    types = (float, np.floating)


class Whole(_Range):
    """Whole numbers, also as floats with no fractional part (500.0), within the bounds."""

    kind = "a whole number"
    types = (numbers.Real,)

    def accepts(self, value: Any) -> bool:
        return super().accepts(value) and float(value).is_integer()


class Options(Constraint):
    """One of the given strings."""

    def __init__(self, *options: str):
        self.options = options

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.options

    def describe(self) -> str:
        return "one of " + ", ".join(repr(o) for o in self.options)


class Text(Constraint):
    """Any string (a device name, a path, ...), checked further where it is used."""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str)

    def describe(self) -> str:
        return "a string"


class PathName(Constraint):
    """A file or folder name: a string or an ``os.PathLike``."""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str | os.PathLike)

    def describe(self) -> str:
        return "a path"


class Bool(Constraint):
    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool | np.bool_)

    def describe(self) -> str:
        return "True or False"


class NoneValue(Constraint):
    def accepts(self, value: Any) -> bool:
        return value is None

    def describe(self) -> str:
        return "None"


class Seq(Constraint):
    """A non-empty list or tuple of items each accepted by ``item``."""

    def __init__(self, item: Constraint):
        self.item = item

    def accepts(self, value: Any) -> bool:
        return (
            isinstance(value, list | tuple)
            and len(value) > 0
            and all(self.item.accepts(v) for v in value)
        )

    def describe(self) -> str:
        return f"a non-empty list of {_plural(self.item.describe())}"


class Either(Constraint):
    """Any value one of the constraints accepts."""

    def __init__(self, *options: Constraint):
        self.options = options

    def accepts(self, value: Any) -> bool:
        return any(o.accepts(value) for o in self.options)

    def describe(self) -> str:
        return " or ".join(o.describe() for o in self.options)


def optional(c: Constraint) -> Constraint:
    """``c`` or None."""
    return Either(c, NoneValue())


def _plural(phrase: str) -> str:
    for a in ("an ", "a "):
        if phrase.startswith(a):
            head, _, rest = phrase[len(a) :].partition(" ")
            return f"{head}s {rest}".strip()
    return phrase


# -- bounds on what files and settings may ask for, checked before anything is allocated ----
#: pixels per side of the square images the networks take (``image_size``)
MAX_IMAGE_SIZE = 1024
#: bytes read from one image file (a larger file is not read)
MAX_IMAGE_BYTES = 64 * 2**20
#: pixels of one image as its header states them (a larger image is not decoded)
MAX_IMAGE_PIXELS = 2**26
#: bytes read from one dataset file (an IDX file, decompressed; a CIFAR-10 batch)
MAX_DATASET_BYTES = 2**30
#: parameters of one network (generator or critic) an architecture may ask for
MAX_NET_PARAMETERS = 2**27


def check_image_size(size: Any, name: str = "image_size") -> None:
    """ConfigError unless ``size`` (pixels per side) is an integer in 1..MAX_IMAGE_SIZE."""
    if not Int(ge=1, le=MAX_IMAGE_SIZE).accepts(size):
        raise ConfigError(
            f"{name}: expected pixels per side, an integer from 1 to {MAX_IMAGE_SIZE}, got {size!r}"
        )


# -- constraints several detectors share ---------------------------------------------------
CONTAMINATION = Real(ge=0, lt=1)
#: a fraction of the training images in [0, 1), or a count of them
CALIBRATION = Either(Int(ge=0), Float(ge=0, lt=1))
SEED = Int(ge=0)
DEVICE = optional(Text())
COUNT = Int(ge=1)
RATE = Real(gt=0)


def check_params(estimator: Any) -> None:
    """ConfigError for the first parameter of ``estimator`` that its class's
    ``param_constraints`` do not accept."""
    for name, constraint in type(estimator).param_constraints.items():
        value = getattr(estimator, name)
        if not constraint.accepts(value):
            raise ConfigError(f"{name}: expected {constraint.describe()}, got {value!r}")


def accepted(constraints: Sequence[Constraint], value: Any) -> bool:
    """True when any of the constraints accepts ``value``."""
    return any(c.accepts(value) for c in constraints)
