"""Argument types shared by the commands, so a bad number is argparse's one-line error, never a traceback; and
``UsageError`` for what argparse cannot check alone (options that exclude each other, names that contradict)."""

from __future__ import annotations

import argparse


class UsageError(Exception):
    """The command line asks for something it cannot mean: said as ``upscaler <command>: ...`` with exit status 2,
    as argparse says its own (some were exit 1, some lacked the command's name)."""


def _at_least(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be {least} or more, not {value}")
    return value


def _between(text: str, least: int, most: int, why: str = "") -> int:
    """An integer from ``least`` to ``most`` (``why`` says what the bound is, where it is not obvious)."""
    value = _at_least(text, least)
    if value > most:
        raise argparse.ArgumentTypeError(f"must be at most {most}{why}, not {value}")
    return value


def positive_int(text: str) -> int:
    """An integer of at least 1 (counts, limits, processes)."""
    return _at_least(text, 1)


def non_negative_int(text: str) -> int:
    """An integer of at least 0 (limits where 0 means unlimited)."""
    return _at_least(text, 0)


def key_limit(text: str) -> int:
    """A per-key limit: an integer from 0 (unlimited) to what the key's column holds (``shared.tenants.MAX_LIMIT``)."""
    from shared.tenants import MAX_LIMIT

    return _between(text, 0, MAX_LIMIT, " (0 means unlimited)")


def limit_or_default(text: str) -> int | None:
    """A per-key limit (``key_limit``), or ``default`` (None: the deployment's setting)."""
    return None if text == "default" else key_limit(text)


def grace_hours(text: str) -> int:
    """Hours a rotated secret goes on signing, 0..a year (a huge number was an OverflowError traceback)."""
    from shared.webhooks import MAX_ROTATION_GRACE

    return _between(text, 0, int(MAX_ROTATION_GRACE.total_seconds() // 3600), " (a year)")


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def positive_float(text: str) -> float:
    """A finite number above 0 (rates, minutes)."""
    value = _number(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def scale_factor(text: str) -> float:
    """An enlargement factor in the API's range, fractions allowed."""
    from shared.sizing import MAX_FACTOR, MIN_FACTOR

    value = _number(text)
    if not MIN_FACTOR <= value <= MAX_FACTOR:
        raise argparse.ArgumentTypeError(f"must be from {MIN_FACTOR:g} to {MAX_FACTOR:g}, not {text}")
    return value


def denoise(text: str) -> float | None:
    """A restoration strength 0..1, or 'auto' (None: measured from each file)."""
    if text.strip().lower() == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a number from 0 to 1, not {text!r}")
    return value


def quality(text: str) -> int:
    """A JPEG/WebP/AVIF quality, in the API's range (0 silently meant the default; 101 and negatives were passed on)."""
    from shared.limits import QUALITY_RANGE

    return _between(text, *QUALITY_RANGE)


def target_side(text: str) -> int:
    """An output width or height in pixels, in the API's range (0 silently meant x4; a negative one reached
    TensorFlow)."""
    from shared.sizing import MAX_TARGET_SIDE

    return _between(text, 1, MAX_TARGET_SIDE)


def dpi(text: str) -> int:
    """A resolution in pixels per inch, in the API's range (a 0 or 20000 was sent, and refused file by file)."""
    from shared.sizing import DPI_RANGE

    return _between(text, *DPI_RANGE)


def print_length(text: str) -> float:
    """A print width or height in its unit, above 0, in the API's range."""
    from shared.sizing import MAX_PRINT_LENGTH

    value = _number(text)
    if not 0 < value <= MAX_PRINT_LENGTH:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most {MAX_PRINT_LENGTH:g}, not {text}")
    return value


def add_size_options(parser: argparse.ArgumentParser, fit_default: str | None) -> None:
    """The output size options, the same for ``upscale`` (local) and ``submit`` (through the API): the factor,
    pixels, or a print size at a resolution. ``fit_default``: None leaves it to the server."""
    from shared.sizing import FITS, PRINT_UNITS

    parser.add_argument("--scale", type=scale_factor, default=None,
                        help="factor 1..8, fractions allowed (default 4 without a width, height or print size)")
    parser.add_argument("--width", type=target_side, default=None,
                        help="output width in pixels (keeps the aspect alone)")
    parser.add_argument("--height", type=target_side, default=None,
                        help="output height in pixels (keeps the aspect alone)")
    parser.add_argument("--fit", choices=FITS, default=fit_default, help="with both a width and a height (contain)")
    parser.add_argument("--dpi", type=dpi, default=None,
                        help="resolution written into the output, pixels per inch (default: the input's times the "
                             "enlargement, so the print size stays)")
    parser.add_argument("--print-width", type=print_length, default=None,
                        help="with --dpi: print width (output width = print width x dpi)")
    parser.add_argument("--print-height", type=print_length, default=None, help="with --dpi: print height")
    parser.add_argument("--print-unit", choices=PRINT_UNITS, default=None, help="unit of --print-width/height (in)")


def tcp_port(text: str) -> int:
    """A TCP port to listen on, 1..65535, as the settings check theirs (70000 was a gunicorn traceback)."""
    return _between(text, 1, 65535, " (a TCP port)")


def port_or_off(text: str) -> int:
    """A TCP port, or 0 for off (as the matching setting reads 0)."""
    return 0 if text.strip() == "0" else tcp_port(text)
