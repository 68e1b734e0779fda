"""Hold a task's soft time limit while the worker claims its job.

Why: Celery's soft time limit is a signal (``SIGUSR1`` in a prefork child) whose handler raises
``SoftTimeLimitExceeded`` wherever the task's code happens to be. Landing inside the claim of a job, it ended
the task between the claim's commit and the block that ends a failed job with its code, so the job stayed
``running`` under a lease nobody renewed until the sweeper took it back, an attempt spent (seen on a loaded
machine, where a fresh pool process's first claim took longer than a short limit). Held, the limit is raised
when the caller releases it, inside that block, and the job fails ``time_limit`` as it should.

A handler can only be swapped in the main thread (where prefork runs tasks); elsewhere, or where no Python
handler is installed (no time limit, a solo pool), holding does nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

SOFT_LIMIT_SIGNAL = getattr(signal, "SIGUSR1", None)  # billiard's SIG_SOFT_TIMEOUT


def hold_time_limit() -> Callable[..., None]:
    """Defer the soft time limit until the returned ``release`` is called, which raises it then if it came
    meanwhile (and restores the handler either way); ``release(deliver=False)`` drops it instead. Call
    ``release`` exactly once."""
    if SOFT_LIMIT_SIGNAL is None or threading.current_thread() is not threading.main_thread():
        return _nothing
    came: list[int] = []
    previous = signal.signal(SOFT_LIMIT_SIGNAL, lambda signum, _frame: came.append(signum))
    if not callable(previous):  # no Python handler: no time limit to hold
        signal.signal(SOFT_LIMIT_SIGNAL, previous)
        return _nothing

    def release(deliver: bool = True) -> None:
        signal.signal(SOFT_LIMIT_SIGNAL, previous)
        if came and deliver:
            previous(SOFT_LIMIT_SIGNAL, None)

    return release


@contextmanager
def time_limit_waived() -> Iterator[None]:
    """No soft time limit inside the block: one that comes is dropped. For the commit that ends a job and what
    follows it in the same call (publishing its event to Redis, which may retry for seconds): landing there, the
    limit ended a job already recorded as succeeded by discarding its result, a done job pointing at nothing.
    The hard limit (a minute later) still ends a block that hangs."""
    release = hold_time_limit()
    try:
        yield
    finally:
        release(deliver=False)


def _nothing(deliver: bool = True) -> None:
    """The release of a hold that held nothing."""
