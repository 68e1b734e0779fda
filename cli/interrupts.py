"""How a command that writes files ends when it is stopped: Ctrl-C, and SIGTERM or SIGHUP raised as it, so the
same cleanup runs (``upscaler`` turns them on for its writing commands, ``cli.__main__``)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from types import FrameType
from typing import NoReturn


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (``kill``, ``timeout``, ``docker stop``, a closed terminal), raised where the program is,
    so the cleanup Ctrl-C runs runs too: without it a raw band file (a gigabyte for a big output) and the
    ``.part`` file stayed behind."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


TERMINATING = (signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Within it, SIGTERM and SIGHUP raise ``Terminated`` (a second one ends the process at once, cleanup or not);
    a signal ignored already (``nohup``) stays ignored, and the handlers are put back after."""
    previous = {each: signal.getsignal(each) for each in TERMINATING}

    def terminate(signum: int, _frame: FrameType | None) -> None:
        for each in TERMINATING:
            signal.signal(each, signal.SIG_DFL)
        raise Terminated(signum)

    for each, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(each, terminate)
    try:
        yield
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)


def exit_status(stopped: KeyboardInterrupt) -> int:
    """128 + the signal that stopped the run, as a shell reports it: 130 for Ctrl-C, 143 for SIGTERM."""
    return 128 + (stopped.signum if isinstance(stopped, Terminated) else signal.SIGINT)


def end_at_once(stopped: KeyboardInterrupt) -> NoReturn:
    """End the process now, with ``exit_status(stopped)``, without waiting for its threads (a watch that polls for
    an hour, a download under way). Standard output and error are flushed first: ``os._exit`` skips Python's own
    flush at exit, and lines still in a pipe's or a log file's buffer (``done X -> Y``: which results were saved)
    were lost. A reader that has gone cannot take them, and there is nothing left to tell it: that is ignored."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # ValueError: a stream already closed
            stream.flush()
    os._exit(exit_status(stopped))
