"""Loaded BPF programs by their kernel ids: the ids this process loaded (the test suite checks that
none outlives its session) and the kernel's translation of a program (``bpftool prog dump xlated``)."""
from __future__ import annotations

import re
import subprocess

from ..errors import ProbeStateError

__all__ = ["LOADED_PROGRAM_IDS", "dump_xlated", "prog_id"]

#: ids of every BPF program this process loaded (the tests check that none outlives its session)
LOADED_PROGRAM_IDS: set[int] = set()


def dump_xlated(prog_fds: dict[str, int]) -> str:
    """``bpftool prog dump xlated`` of each ``{name: program fd}``, one after another."""
    out = []
    for name, fd in prog_fds.items():
        pid = prog_id(fd)
        try:
            res = subprocess.run(["bpftool", "prog", "dump", "xlated", "id", str(pid)],
                                 capture_output=True, text=True, check=True)
        except FileNotFoundError:
            raise ProbeStateError("bpftool is not installed: apt-get install bpftool") from None
        except subprocess.CalledProcessError as exc:
            raise ProbeStateError(f"bpftool failed for {name}: {exc.stderr.strip()}") from None
        out.append(f"// program {name} (id {pid})\n{res.stdout}")
    return "\n".join(out)


def prog_id(fd: int) -> int:
    """The kernel's id of the BPF program behind ``fd``."""
    with open(f"/proc/self/fdinfo/{fd}") as f:
        m = re.search(r"^prog_id:\s*(\d+)", f.read(), re.M)
    if not m:
        raise ProbeStateError("the kernel does not report program ids in fdinfo")
    return int(m.group(1))
