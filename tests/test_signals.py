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


def test_a_stop_signal_sets_the_stop_event_at_once_while_the_main_thread_is_busy() -> None:
    """The loop takes signals only between its steps, and a step may last (a reload stopping
    the old watchers, a collector waiting for its camera); the waits that watch the stop event
    end when SIGTERM or Ctrl-C arrives, not when the loop next looks. SIGHUP does not stop."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    stop = threading.Event()
    signals = Signals(signal.SIGTERM, signal.SIGHUP, stop=stop)
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        assert not stop.wait(0.5)
        os.kill(os.getpid(), signal.SIGTERM)
        seen = []  # another thread waits on the stop event while this one takes nothing
        waiter = threading.Thread(target=lambda: seen.append(stop.wait(5)))
        waiter.start()
        waiter.join()
        assert seen == [True]
        assert signals.take() == [signal.SIGHUP, signal.SIGTERM]  # the loop still sees both
    finally:
        signals.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert signal.set_wakeup_fd(-1) == -1  # the wake-up pipe given back
