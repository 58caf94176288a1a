"""Running a probe on its own: ``with ExecSnoop() as p: ...``, ``p.start(descendants_of=PID)``,
``p.source``.  Every shipped probe is a :class:`StandaloneProbe`; a Session drives any
:class:`~ebpftoolkit.probes.base.Probe`."""
from __future__ import annotations

from ..errors import ProbeStateError
from ..scope import SELF, Scope
from ..session import Session, program_text_for
from .base import Probe

__all__ = ["StandaloneProbe"]


class StandaloneProbe(Probe):
    # -- exploring ------------------------------------------------------
    @property
    def source(self) -> str:
        """The complete BPF C compiled for this probe (the session's, once loaded)."""
        if self._session is not None and self._session.program is not None:
            return self._session.program.text
        return program_text_for([self], SELF)

    def dump_xlated(self) -> str:
        """The kernel's translated BPF instructions (needs the probe loaded, and bpftool)."""
        if self._session is None or self._session.program is None or not self._session.program.loaded:
            raise ProbeStateError("dump_xlated() needs a running probe: call start() or use it in a `with` block")
        return self._session.program.dump_xlated()

    # -- standalone use -------------------------------------------------
    def start(self, descendants_of: Scope = SELF) -> "Probe":
        """Trace with this probe alone (``descendants_of`` as in :class:`~ebpftoolkit.Session`)."""
        if self._own_session is not None and self._own_session.running:
            raise ProbeStateError(f"{type(self).__name__} is already running")
        if self._session is not None and self._own_session is None:
            raise ProbeStateError(f"{type(self).__name__} belongs to a Session: start the session instead")
        self._own_session = Session(self, descendants_of=descendants_of)
        self._own_session.start()
        return self

    def stop(self) -> "Probe":
        if self._own_session is None:
            raise ProbeStateError(f"{type(self).__name__} was not started")
        self._own_session.stop()
        return self

    def __enter__(self) -> "Probe":
        """``with probe:`` starts it (scope "self"); ``with probe.start(descendants_of=PID):`` too."""
        if self._own_session is not None and self._own_session.running:
            return self
        return self.start()

    def __exit__(self, *exc) -> None:
        if self._own_session is not None and self._own_session.running:
            self.stop()

    def __del__(self):  # last-resort cleanup if a started probe is dropped
        try:
            if self._own_session is not None and self._own_session.running:
                self._own_session.stop()
        except Exception:
            pass
