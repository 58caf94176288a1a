"""The text of a user's own BCC program as ebpftoolkit compiles it, and its errors in the user's terms.

The user's C is compiled as written, behind a short header and a ``#line 1 "NAME.bpf.c"``
directive, so clang's diagnostics name the user's file and lines.  Two things are added:

- the header: the session's process filter and recording switch (``EBPF_TRACED()``,
  ``EBPF_RECORDING()``), opened by path from the BPF filesystem (runtime/bpffs.py), and a
  per-CPU counter of records that could not be handed over;
- at each ``NAME.ringbuf_output(...)`` / ``NAME.ringbuf_reserve(...)`` of a ring buffer the
  user declared, the call is wrapped in a statement expression that counts a failure
  (a full ring) in that counter.  The call itself is untouched, so BCC still infers the
  record type from it, and no newline is added, so line numbers stay the user's.

BCC rewrites the source before compiling it for the kernel (map calls become helper calls,
tracepoint structs are inserted), so the verifier's ``@ file:LINE`` annotations count the
rewritten lines.  BCC prints the rewritten source with DEBUG_PREPROCESSOR; :func:`user_line`
maps a rewritten line back to the user's by its text.
"""
from __future__ import annotations

import difflib
import re

__all__ = ["ringbuf_names", "perf_output_names", "submitted", "histogram_names", "user_types", "btf_anchor", "wrap_ringbuf_calls", "program_text", "rewritten_lines", "user_line",
           "verifier_failure", "diagnostics", "DEBUG_PREPROCESSOR"]

DEBUG_PREPROCESSOR = 0x4
_RINGBUF = re.compile(r"\bBPF_RINGBUF_OUTPUT\s*\(\s*([A-Za-z_]\w*)\s*,")
_PERF_OUTPUT = re.compile(r"\bBPF_PERF_OUTPUT\s*\(\s*([A-Za-z_]\w*)\s*\)")
_HISTOGRAM = re.compile(r"\bBPF_HISTOGRAM\s*\(\s*([A-Za-z_]\w*)")
_TAGGED = re.compile(r"\b(struct|union)\s+([A-Za-z_]\w*)\s*\{")
_TYPEDEF = re.compile(r"\btypedef\s+(?:struct|union)\s*(?:[A-Za-z_]\w*)?\s*\{")
_DIAG = re.compile(r"^\S+:\d+:\d+: (?:fatal )?(?:error|warning|note): ")
_INSN = re.compile(r"^\d+: \(")
_ANNOT = re.compile(r"^;(.*)@ (\S+):(\d+)\s*$")

_HEADER = """/* ebpftoolkit: the session's filter and loss counter for custom probe {name} (see CustomProbe) */
#include <uapi/linux/ptrace.h>             /* struct pt_regs, PT_REGS_PARM1() for uprobes */
#include <uapi/linux/bpf_perf_event.h>     /* struct bpf_perf_event_data for perf events */
#define EBT_SCOPE_TREE {tree}
BPF_TABLE_PINNED("array", u32, u32, ebt_state, 1, "{pins}/ebt_state");
#if EBT_SCOPE_TREE
BPF_TABLE_PINNED("hash", u32, u8, ebt_tracked, {track_max}, "{pins}/ebt_tracked");
#endif
BPF_PERCPU_ARRAY(ebt_user_lost, u64, {slots});
static __always_inline int ebpf_recording(void)
{{
    u32 z = 0;
    u32 *on = ebt_state.lookup(&z);
    return on && *on;
}}
static __always_inline int ebpf_traced(void)
{{
#if EBT_SCOPE_TREE
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    return ebpf_recording() && ebt_tracked.lookup(&tgid) != NULL;
#else
    return ebpf_recording();
#endif
}}
#define EBPF_RECORDING() ebpf_recording()
#define EBPF_TRACED() ebpf_traced()
static __always_inline void ebt_user_lost_bump(u32 slot)
{{
    u64 *n = ebt_user_lost.lookup(&slot);
    if (n)
        (*n)++;
}}
#line 1 "{file}"
"""


def ringbuf_names(source: str) -> list[str]:
    """Ring buffers the source declares with BPF_RINGBUF_OUTPUT, in order."""
    code = _code_only(source)
    return list(dict.fromkeys(m.group(1) for m in _RINGBUF.finditer(code)))


def perf_output_names(source: str) -> list[str]:
    """Perf event arrays the source declares with BPF_PERF_OUTPUT, in order."""
    return list(dict.fromkeys(m.group(1) for m in _PERF_OUTPUT.finditer(_code_only(source))))


def submitted(source: str, name: str) -> bool:
    """Whether the code (comments and strings left out) calls ``name.perf_submit(...)``."""
    return re.search(rf"\b{re.escape(name)}\s*\.\s*perf_submit\s*\(", _code_only(source)) is not None


def histogram_names(source: str) -> list[str]:
    return list(dict.fromkeys(m.group(1) for m in _HISTOGRAM.finditer(_code_only(source))))


def _code_only(source: str) -> str:
    """The source with comments, strings and character literals blanked (same length, newlines kept)."""
    out, i, n = list(source), 0, len(source)
    while i < n:
        c = source[i]
        if source.startswith("//", i):
            j = source.find("\n", i)
            j = n if j < 0 else j
        elif source.startswith("/*", i):
            j = source.find("*/", i + 2)
            j = n if j < 0 else j + 2
        elif c in "\"'":
            j = i + 1
            while j < n and source[j] != c and source[j] != "\n":
                j += 2 if source[j] == "\\" else 1
            j = min(j + 1, n)
        else:
            i += 1
            continue
        for k in range(i, j):
            if out[k] != "\n":
                out[k] = " "
        i = j
    return "".join(out)


def user_types(source: str) -> list[str]:
    """The struct/union types the source defines (``struct ev``, ``union u``, typedef names), in order."""
    code = _code_only(source)
    found = [f"{m.group(1)} {m.group(2)}" for m in _TAGGED.finditer(code)]
    for m in _TYPEDEF.finditer(code):
        end = _close_brace(code, m.end() - 1)
        if end is not None:
            t = re.match(r"\s*([A-Za-z_]\w*)\s*;", code[end + 1:])
            if t:
                found.append(t.group(1))
    return list(dict.fromkeys(found))


def btf_anchor(source: str) -> str:
    """A one-entry map whose value holds every type the source defines.  BTF (where record
    types are looked up) only holds types that maps and functions use, not local variables' types;
    through this map every user type is in it.  Appended after the user's text."""
    types = user_types(source)
    if not types:
        return ""
    members = " ".join(f"{t} t{i};" for i, t in enumerate(types))
    return (f"\n/* ebpftoolkit: the user's types, for BTF */\nstruct ebt_btf_anchor {{ {members} }};\n"
            "BPF_ARRAY(ebt_btf_anchor, struct ebt_btf_anchor, 1);\n")


def _close_brace(code: str, open_at: int) -> int | None:
    depth = 0
    for i in range(open_at, len(code)):
        if code[i] == "{":
            depth += 1
        elif code[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return None


def wrap_ringbuf_calls(source: str, rings: list[str], perfs: list[str] = ()) -> str:
    """Every ``R.ringbuf_output(...)`` / ``R.ringbuf_reserve(...)`` of a ring ``R`` in ``rings``, and every
    ``P.perf_submit(...)`` of a perf array in ``perfs``, counted when it fails (slot = the index in
    ``rings + perfs``); nothing else changes, newlines included."""
    slots = list(rings) + list(perfs)
    if not slots:
        return source
    code = _code_only(source)
    pat = re.compile(r"\b(" + "|".join(map(re.escape, slots)) + r")\s*\.\s*(ringbuf_output|ringbuf_reserve|perf_submit)"
                     r"\s*\(")
    spans = []
    for m in pat.finditer(code):
        end = _close_paren(code, m.end() - 1)
        if end is not None and (m.group(2) == "perf_submit") == (m.group(1) in perfs):
            spans.append((m.start(), end + 1, slots.index(m.group(1)), m.group(2)))
    out = source
    for start, end, slot, kind in reversed(spans):
        call = out[start:end]
        if kind in ("ringbuf_output", "perf_submit"):
            wrapped = f"({{ int __ebt_r = {call}; if (__ebt_r) ebt_user_lost_bump({slot}); __ebt_r; }})"
        else:
            wrapped = f"({{ void *__ebt_p = {call}; if (!__ebt_p) ebt_user_lost_bump({slot}); __ebt_p; }})"
        out = out[:start] + wrapped + out[end:]
    return out


def _close_paren(code: str, open_at: int) -> int | None:
    depth = 0
    for i in range(open_at, len(code)):
        if code[i] == "(":
            depth += 1
        elif code[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return None


def program_text(source: str, name: str, file: str, pins: str, tree: bool, track_max: int) -> tuple[str, list[str]]:
    """(the complete text BCC compiles, the ring buffers and perf arrays whose failures are counted, by slot)."""
    rings, perfs = ringbuf_names(source), perf_output_names(source)
    head = _HEADER.format(name=name, tree=int(tree), pins=pins, track_max=track_max,
                          slots=max(1, len(rings) + len(perfs)), file=file.replace("\\", "\\\\").replace('"', '\\"'))
    return head + wrap_ringbuf_calls(source, rings, perfs) + btf_anchor(source), rings + perfs


def rewritten_lines(log: str, file: str) -> list[str]:
    """The user's part of the source as BCC rewrote it (DEBUG_PREPROCESSOR output in ``log``): line 1 first."""
    marker = f'#line 1 "{file}"'
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == marker:
            body = lines[i + 1:]
            for j, b in enumerate(body):
                if b.strip() == "#include <bcc/footer.h>":
                    return body[:j]
            return body
    return []


def user_line(rewritten: list[str], line: int, user: list[str]) -> int | None:
    """The user's line that BCC's rewritten line ``line`` came from: the same text (or the most similar,
    for a rewritten map call) at or before that line number, as rewriting only ever adds lines."""
    if not 1 <= line <= len(rewritten):
        return None
    text = rewritten[line - 1].strip()
    if not text:
        return None
    limit = min(line, len(user))
    same = [i for i in range(limit) if user[i].strip() == text]
    if same:
        return same[-1] + 1
    scored = [(difflib.SequenceMatcher(None, user[i].strip(), text).ratio(), i) for i in range(limit) if user[i].strip()]
    best = max(scored, default=(0.0, -1))
    return best[1] + 1 if best[0] >= 0.5 else None


def diagnostics(log: str) -> str:
    """clang's diagnostics in ``log`` (error, warning and note blocks with their source lines), without
    the rewritten source and command lines that BCC's debug output adds around them."""
    lines, out, keep = log.splitlines(), [], False
    for ln in lines:
        if _DIAG.match(ln):
            keep = True
        elif re.match(r"^\d+ (error|warning)s? generated\.", ln):
            out.append(ln)
            keep = False
            continue
        elif keep and (ln.startswith("#") or ln.startswith("clang -cc1")):
            keep = False
        if keep:
            out.append(ln)
    return "\n".join(out)


def verifier_failure(log: str, file: str) -> tuple[int | None, str] | None:
    """(rewritten line of the last source annotation before the verifier's error, the error's text),
    or None when ``log`` holds no verifier output."""
    lines = log.splitlines()
    done = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith("processed ")
                 and " insns" in lines[i]), None)
    if done is None:
        return None
    last_insn = next((i for i in range(done - 1, -1, -1) if _INSN.match(lines[i])), None)
    start = last_insn + 1 if last_insn is not None else done
    message = [ln for ln in lines[start:done] if ln.strip()]
    hints = [ln for ln in lines[done + 1:done + 4] if ln.startswith("HINT")]
    line = None
    for i in range(start - 1, -1, -1):
        m = _ANNOT.match(lines[i])
        if m and m.group(2) == file and int(m.group(3)) > 0:
            line = int(m.group(3))
            break
        if lines[i].startswith("func#") or lines[i].startswith("bpf: Failed"):
            break
    return line, " ".join(message + hints).strip() or lines[done]
