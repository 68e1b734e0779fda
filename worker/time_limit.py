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
from collections.abc import Callable

SOFT_LIMIT_SIGNAL = getattr(signal, "SIGUSR1", None)  # billiard's SIG_SOFT_TIMEOUT


def hold_time_limit() -> Callable[[], None]:
    """Defer the soft time limit until the returned ``release`` is called, which raises it then if it came
    meanwhile (and restores the handler either way). Call ``release`` exactly once."""
    if SOFT_LIMIT_SIGNAL is None or threading.current_thread() is not threading.main_thread():
        return _nothing
    came: list[int] = []
    previous = signal.signal(SOFT_LIMIT_SIGNAL, lambda signum, _frame: came.append(signum))
    if not callable(previous):  # no Python handler: no time limit to hold
        signal.signal(SOFT_LIMIT_SIGNAL, previous)
        return _nothing

    def release() -> None:
        signal.signal(SOFT_LIMIT_SIGNAL, previous)
        if came:
            previous(SOFT_LIMIT_SIGNAL, None)

    return release


def _nothing() -> None:
    """The release of a hold that held nothing."""
