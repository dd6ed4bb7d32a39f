"""Signals reach the daemon's loop without its handler taking a lock (watchdog/signals.py)."""

from __future__ import annotations

import os
import signal
import threading

from watchdog.signals import Signals


def test_a_signal_in_the_moment_the_main_thread_holds_its_stop_events_lock_is_taken() -> None:
    """``Event.wait`` holds its event's lock for a moment each time it wakes, and a handler runs
    in the main thread right there. A handler calling ``Event.set`` then waited for its own
    thread, for good (the daemon no longer stopped on SIGTERM); recording the signal does not,
    and the loop takes it afterwards."""
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        signals = Signals(signal.SIGUSR1)
        stop = threading.Event()
        with stop._cond:  # the moment Event.wait holds it (the deadlock's window)
            os.kill(os.getpid(), signal.SIGUSR1)  # handled here, at the next bytecode
            inside = signals.take()
        assert inside == [signal.SIGUSR1]
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR1)
        assert signals.take() == [signal.SIGUSR1, signal.SIGUSR1] and signals.take() == []
    finally:
        signal.signal(signal.SIGUSR1, previous)
