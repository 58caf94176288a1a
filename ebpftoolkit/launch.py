"""Starting the traced command: find it on PATH here (so the one exec recorded is the command's,
not every PATH entry tried), start it, say clearly why it cannot start, and stop it when the
session is interrupted."""
from __future__ import annotations

import errno
import os
import platform
import shutil
import subprocess
import time

from .errors import TargetError

__all__ = ["find_executable", "spawn", "wait_for", "end"]


def find_executable(argv, popen_kwargs) -> str:
    """The file ``argv[0]`` names, found on PATH here (so that the child's exec is the one exec
    recorded, not every PATH entry tried before it); TargetError when there is none."""
    name = os.fsdecode(argv[0])
    if "\0" in name or any("\0" in os.fsdecode(a) for a in argv):
        raise TargetError(f"argv holds a NUL byte ({list(map(os.fsdecode, argv))!r}): no program can receive it")
    if popen_kwargs.get("executable"):
        return os.fsdecode(popen_kwargs.pop("executable"))
    if os.sep in name:
        return name
    env = popen_kwargs.get("env")
    found = shutil.which(name, path=(env or os.environ).get("PATH", os.defpath))
    if found is None:
        raise TargetError(f"command not found: {name!r} is on no folder of PATH (check the name, or give a path)")
    return found

def spawn(argv, exe: str, preexec, popen_kwargs) -> subprocess.Popen:
    try:
        return subprocess.Popen(list(argv), executable=exe, preexec_fn=preexec, **popen_kwargs)
    except FileNotFoundError:
        raise TargetError(f"command not found: {exe!r} (check the name, or give a full path)") from None
    except PermissionError as exc:
        raise TargetError(f"cannot execute {exe!r}: {exc.strerror} (is it executable? chmod +x)") from None
    except OSError as exc:
        if exc.errno == errno.ENOEXEC:
            raise TargetError(f"{exe!r} is not a program this machine can run (exec format error): a script "
                              "needs a first line such as #!/bin/sh, a binary must be built for "
                              f"{platform.machine()}") from None
        raise TargetError(f"could not start {exe!r}: {exc.strerror or exc}") from None
    except subprocess.SubprocessError as exc:
        raise TargetError(f"could not start {exe!r} traced: {exc}") from None


def end(proc: subprocess.Popen, grace: float = 2.0) -> None:
    """Stop a traced command that is still running (the session was interrupted): SIGTERM, and
    SIGKILL if it has not exited after ``grace`` seconds (at once on a second interrupt)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
        except BaseException:             # a second Ctrl-C: do not wait, but do not leave it running
            proc.kill()
            raise
    proc.wait()


def wait_for(proc: subprocess.Popen, stdin_data=None, timeout: float | None = None):
    """``proc.communicate()``, in short waits: a Ctrl-C or SIGTERM that the kernel hands to another
    thread (numpy's, a collector's) would not interrupt one long wait, so the main thread comes
    back to Python often enough to run the signal handler.  TimeoutExpired after ``timeout``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        step = 0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic()))
        try:
            return proc.communicate(stdin_data, timeout=step)
        except subprocess.TimeoutExpired:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(proc.args, timeout) from None
            stdin_data = None        # sent by the first call: communicate() keeps feeding it
