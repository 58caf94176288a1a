"""The status line under a traced cell: an ipywidgets label under a Jupyter kernel, plain
lines elsewhere.  Never a silent wait: while tracing it shows the elapsed time."""
from __future__ import annotations

import html
import threading
import time

from IPython.display import display

__all__ = ["Status", "COMPILING"]

COMPILING = "compiling and attaching probes (a few seconds)..."


class Status:
    def __init__(self, shell, prefix: str, first: str):
        self.prefix, self._w, self._tick = prefix, None, None
        if getattr(shell, "kernel", None) is not None:       # a Jupyter kernel: a frontend can show widgets
            try:
                import ipywidgets as W
                self._w = W.HTML(value=self._html(first, "#555"), layout=W.Layout(width="auto"))
                display(self._w)
                return
            except ImportError:       # no ipywidgets: text
                self._w = None
        self.set(first)

    @staticmethod
    def _html(text: str, color: str) -> str:
        return f"<span style='color:{color};font-family:monospace'>{html.escape(text)}</span>"

    def set(self, text: str, color: str = "#555") -> None:
        self._stop_ticker()
        if self._w is not None:
            self._w.value = self._html(text, color)
        else:
            print(f"{self.prefix}: {text}", flush=True)

    def final(self, text: str, color: str) -> None:
        """The label's last state; in text mode nothing (the caller prints its own summary line)."""
        if self._w is not None:
            self.set(text, color)

    def ticking(self, text: str) -> None:
        """``text`` plus the elapsed time, refreshed every half second (widget only)."""
        self.set(text + "...")
        if self._w is None:
            return
        stop, t0 = threading.Event(), time.monotonic()

        def run():
            while not stop.wait(0.5):
                try:
                    self._w.value = self._html(f"{text} ({time.monotonic() - t0:.1f} s; interrupt the kernel "
                                               "to stop)", "#1a6")
                except Exception:      # the widget was closed
                    return
        self._tick = (stop, threading.Thread(target=run, name="ebpftoolkit-status", daemon=True))
        self._tick[1].start()

    def _stop_ticker(self) -> None:
        if self._tick is not None:
            stop, th = self._tick
            self._tick = None
            stop.set()
            th.join(2)
