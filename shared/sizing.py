"""Any output size: a factor, a width, a height, or a box, planned once for the API, the worker and the CLI.

The network enlarges by 2, 3 or 4 (8 by running x4 then x2); any other size is reached by running the
smallest network scale that reaches the target and resampling the result to the exact size with a
high-quality filter (Lanczos). ``fit`` says what to do when both width and height are given: ``contain``
keeps the aspect inside the box, ``cover`` fills the box and crops the overflow evenly, ``fill`` stretches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from shared.limits import SCALES

FITS = ("contain", "cover", "fill")
MIN_FACTOR, MAX_FACTOR = 1.0, 8.0
MAX_TARGET_SIDE = 65535  # the widest or tallest output a width/height may ask for (the API and the CLI)
DPI_RANGE = (1, 9600)  # a resolution to write into the output, in pixels per inch (the API and the CLI)
MAX_PRINT_LENGTH = 10000.0  # a print side in its unit (above 0)
PRINT_UNITS = ("in", "cm")
DEFAULT_SCALE = 4.0
RESTORE_SCALE = 2  # the network scale an input asked at its own size is restored at (``SizePlan.restored``)


def megapixels(width: int, height: int) -> float:
    """A job's cost against a daily quota (``shared.quota``): its output megapixels."""
    return width * height / 1e6


class SizeError(ValueError):
    """A size request that cannot be honoured (the message says why)."""


@dataclass(frozen=True)
class SizeRequest:
    """What the client asked for: a ``scale``, or ``width`` and/or ``height`` (with ``fit`` for both)."""

    scale: float | None = None
    width: int | None = None
    height: int | None = None
    fit: str = "contain"

    def fixed_sides(self) -> tuple[int | None, int | None]:
        """The output's sides that do not depend on the input's size: a width or a height asked alone, or both with
        ``cover`` or ``fill`` (``contain`` fits inside the box, one side smaller); None for each of the others."""
        if self.width and self.height and self.fit == "contain":
            return None, None
        return self.width, self.height

    def describe(self) -> str:
        if self.width or self.height:
            return f"{self.width or 'auto'}x{self.height or 'auto'} ({self.fit})"
        return f"x{self.scale or DEFAULT_SCALE:g}"


@dataclass(frozen=True)
class SizePlan:
    """How to make the output: network scales to run in order, the size to resample to, then the crop box."""

    width: int  # final output size
    height: int
    chain: tuple[int, ...]  # network scales, e.g. (4,), (4, 2); () when resampling alone reaches the target
    resize_to: tuple[int, int]  # size after resampling (before a cover crop)
    restore: bool = False  # an output at the input's own size made by the network at x2, then reduced (``restored``)

    @property
    def network_scale(self) -> int:
        return math.prod(self.chain) if self.chain else 1

    @property
    def megapixels(self) -> float:
        return megapixels(self.width, self.height)

    def held_pixels(self, in_width: int, in_height: int) -> int:
        """The largest image held in memory making this size whole: the network's own output (x8 before
        resampling to x5, x2 before a restore's reduction) or the resampled one."""
        return max(in_width * in_height * self.network_scale ** 2, self.resize_to[0] * self.resize_to[1])

    def restored(self) -> SizePlan:
        """This plan, the input's own size with no network, made instead by the network at x2 and reduced back
        (``worker.render`` decides when: a damaged input, where it cleans JPEG blocks and noise)."""
        return replace(self, chain=(RESTORE_SCALE,), restore=True)

    def is_exact(self, in_width: int, in_height: int) -> bool:
        """One network scale and nothing else (no resampling, no crop): the outputs made band by band."""
        return (len(self.chain) == 1 and self.crop is None
                and self.resize_to == (in_width * self.chain[0], in_height * self.chain[0]))

    @property
    def crop(self) -> tuple[int, int, int, int] | None:
        """The centred box cut from ``resize_to`` (cover), or None."""
        rw, rh = self.resize_to
        if (rw, rh) == (self.width, self.height):
            return None
        left, top = (rw - self.width) // 2, (rh - self.height) // 2
        return left, top, left + self.width, top + self.height


def chain_for(factor: float) -> tuple[int, ...]:
    """The smallest network scale (or x4 then x2) that reaches ``factor``."""
    if factor <= 1.0 + 1e-9:
        return ()
    for scale in sorted(SCALES):
        if scale + 1e-9 >= factor:
            return (scale,)
    if factor <= max(SCALES) * 2 + 1e-9:
        return (max(SCALES), 2)
    raise SizeError(f"at most x{MAX_FACTOR:g}")


def _pixels(length: float) -> int:
    """A side in whole pixels, halves rounded up (Python's ``round`` goes to even: 7.5 -> 8 but 4.5 -> 4), at
    least 1."""
    return max(1, math.floor(length + 0.5))


def size_conflict(scale: float | None, width: int | None, height: int | None, print_width: float | None,
                  print_height: float | None, dpi: int | None) -> str | None:
    """Why a combination of size fields cannot mean anything (None when it can): the API's 422 and the CLI's usage
    error, worded once."""
    printed = print_width is not None or print_height is not None
    if sum((scale is not None, bool(width or height), printed)) > 1:
        return "give one of scale, width/height or print_width/print_height"
    if printed and dpi is None:
        return "print_width and print_height need dpi (pixels per inch)"
    return None


def print_pixels(length: float, unit: str, dpi: int) -> int:
    """A print length (``in`` or ``cm``) at ``dpi`` in whole pixels, rounded as every other size is."""
    return _pixels((length / 2.54 if unit == "cm" else length) * dpi)


def requested_size(scale: float | None = None, width: int | None = None, height: int | None = None,
                   fit: str = "contain", *, print_width: float | None = None, print_height: float | None = None,
                   print_unit: str = "in", dpi: int | None = None) -> SizeRequest:
    """What a job's size fields ask for, print lengths turned into pixels at ``dpi``: the API's job form and
    ``upscaler upscale`` read them the same way. ``SizeError`` (``size_conflict``'s words) when they conflict."""
    conflict = size_conflict(scale, width, height, print_width, print_height, dpi)
    if conflict:
        raise SizeError(conflict)
    if dpi is not None and (print_width is not None or print_height is not None):
        width = None if print_width is None else print_pixels(print_width, print_unit, dpi)
        height = None if print_height is None else print_pixels(print_height, print_unit, dpi)
    if scale is None and not (width or height):
        return SizeRequest(DEFAULT_SCALE, None, None, fit)
    return SizeRequest(scale, width, height, fit)


def plan(in_width: int, in_height: int, request: SizeRequest) -> SizePlan:
    """The output size and the steps for an ``in_width`` x ``in_height`` input."""
    if request.width or request.height:
        if request.width and request.height:
            sx, sy = request.width / in_width, request.height / in_height
            if request.fit == "fill":
                out = resize = (request.width, request.height)
                factor = max(sx, sy)
            else:
                factor = min(sx, sy) if request.fit == "contain" else max(sx, sy)
                resize = (_pixels(in_width * factor), _pixels(in_height * factor))
                out = resize if request.fit == "contain" else (request.width, request.height)
        else:
            factor = request.width / in_width if request.width else request.height / in_height
            resize = out = (request.width or _pixels(in_width * factor), request.height or _pixels(in_height * factor))
    else:
        factor = request.scale or DEFAULT_SCALE
        resize = out = (_pixels(in_width * factor), _pixels(in_height * factor))
    if factor > MAX_FACTOR + 1e-9:
        raise SizeError(f"that is x{factor:.2f} of the input; the most is x{MAX_FACTOR:g}")
    return SizePlan(out[0], out[1], chain_for(factor), resize)
