"""Ctrl-C during a detach is acted on after it, never in the middle (runtime/signals.py)."""
import os
import signal

import pytest

from ebpftoolkit.runtime.signals import interrupts_deferred


def test_ctrl_c_in_the_block_is_raised_after_it_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGINT)
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):         # the Python-level handler would run here, were it not held
                pass
            steps.append("rest of the block ran")
    assert steps == ["rest of the block ran"]
    assert signal.getsignal(signal.SIGINT) is before


def test_a_block_without_signals_changes_nothing():
    seen = []
    old = signal.signal(signal.SIGTERM, lambda n, f: seen.append(n))
    try:
        with interrupts_deferred():
            pass
        assert seen == []
        os.kill(os.getpid(), signal.SIGTERM)   # the caller's own handler is back in place
        for _ in range(1000):
            pass
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, old)


def test_sigterm_reaches_the_callers_handler_once_after_the_block():
    seen = []
    old = signal.signal(signal.SIGTERM, lambda n, f: seen.append(n))
    try:
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass
            assert seen == []
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, old)
