"""Oracle: strace -ff -e trace=execve and ExecSnoop see the same execs of one run."""
from __future__ import annotations

import re
import shutil


from support import bpf

# execve("path", ["a", "b"], 0x7ff... /* 20 vars */) = 0
# execve("path", ["a"], ...) = -1 ENOENT (No such file or directory)
_LINE = re.compile(r'^(?:\d+\s+)?execve\((".*?(?<!\\)"), \[(.*?)\], .*\) = (-?\d+)(?: (E[A-Z0-9]+))?')
_STR = re.compile(r'"((?:[^"\\]|\\.)*)"')


def _unescape(s: str) -> str:
    # strace -xx prints every byte as \xNN
    return bytes(int(h, 16) for h in re.findall(r"\\x([0-9a-f]{2})", s)).decode("utf-8", "surrogateescape")


def parse_strace(text: str) -> list[tuple[str, tuple[str, ...], int]]:
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        filename = _unescape(m.group(1))
        argv = tuple(_unescape(a) for a in _STR.findall(m.group(2)))
        ret = int(m.group(3))
        if ret == -1:
            import errno
            ret = -getattr(errno, m.group(4))
        out.append((filename, argv, ret))
    return out


WORKLOAD = r"""
/bin/true one 'two words' ''
/bin/echo hello >/dev/null
/nonexistent/tool --flag 2>/dev/null
sh -c 'ls / >/dev/null; /bin/false; exit 0'
printf 'a\nb\n' | /usr/bin/sort >/dev/null
for i in 1 2 3; do /bin/true loop $i; done
"""


@bpf
def test_execsnoop_agrees_with_strace(record, tmp_path):
    strace = shutil.which("strace")
    assert strace, "strace is missing: scripts/setup.sh installs it (Debian package strace)"
    log = tmp_path / "strace.log"
    # -ff: one log per process, so no call is split into "<unfinished ...>" / "resumed" lines
    s, res = record([strace, "-ff", "-qq", "-xx", "-s", "4096", "-v", "-e", "trace=execve", "-o", str(log),
                     "/bin/sh", "-c", WORKLOAD], max_arg_len=512)
    assert res.returncode == 0, res.stderr
    logs = sorted(tmp_path.glob("strace.log.*"))
    expected = [e for f in logs for e in parse_strace(f.read_text())]
    assert len(expected) >= 10, [f.read_text() for f in logs]
    df = s.tables["exec"]
    # ExecSnoop also sees the exec of strace itself, which strace does not trace
    df = df[df["filename"] != strace]
    got = [(r.filename, tuple(r.argv), int(r.retval)) for r in df.itertuples()]
    assert sorted(got) == sorted(expected)
    assert any(ret == -2 for _, _, ret in got)          # the failed exec is in both
    assert not df["argv_truncated"].any()
