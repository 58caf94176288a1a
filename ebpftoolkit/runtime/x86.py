"""Where to put an entry uprobe so that the kernel emulates, not single-steps, it.

The kernel emulates a uprobe's instruction when it is a push of a register, a
call or jump with a relative target, or a nop: about 1 us per hit here.  Any
other instruction is single-stepped out of line: about 14 us.  Many functions
start with a few instructions of the second kind (``sub $8,%rsp``, a
rip-relative load, a push of a stack slot) before the first emulated one; Mesa's
glTexImage2D, glTexSubImage2D and glReadPixels entry points are examples.

``probe_site`` walks such a prologue without running it.  It accepts only
instructions whose effect it can follow exactly -- stack pointer decrements,
loads and register moves into registers, pushes -- and tracks where each of the
six integer argument registers' values is when the walk stops, and how far the
stack pointer has moved (so the return address and the stack arguments can
still be found).  Anything else (a store to memory, a branch, a write to %rsp it
cannot size, an encoding it does not know) ends the walk, and the probe stays on
the function's first instruction.  Only for entry probes: a return probe must
sit on the first instruction.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ProbeSite", "probe_site", "first_instruction", "ARG_REGS", "PT_REGS_INDEX"]

# System V argument registers, as x86 register numbers (REX-extended): rdi, rsi, rdx, rcx, r8, r9
ARG_REGS = (7, 6, 2, 1, 8, 9)
_RSP = 4
_NAMES = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
# position of each register (by x86 number) in struct pt_regs / struct ebt_regs (bpf_src/gpu.c)
PT_REGS_INDEX = {0: 10, 1: 11, 2: 12, 3: 5, 5: 4, 6: 13, 7: 14, 8: 9, 9: 8, 10: 7, 11: 6, 12: 3, 13: 2, 14: 1, 15: 0}


def first_instruction(code: bytes) -> tuple[str, bool]:
    """A name for the first instruction and whether the kernel emulates it in a uprobe."""
    b = code
    if b[:4] == b"\xf3\x0f\x1e\xfa":
        return "endbr64", False
    if b[:1] and 0x50 <= b[0] <= 0x57 or (b[:1] == b"\x41" and len(b) > 1 and 0x50 <= b[1] <= 0x57):
        return "push", True
    if b[:1] and 0x70 <= b[0] <= 0x7F or b[:2] and b[0] == 0x0F and 0x80 <= b[1] <= 0x8F:
        return "jcc", True
    if b[:1] == b"\xe8":
        return "call", True
    if b[:1] in (b"\xe9", b"\xeb"):
        return "jmp", True
    if b[:1] == b"\x90" or b[:2] == b"\x0f\x1f" or b[:3] == b"\x66\x0f\x1f":
        return "nop", True
    if b[:1] in (b"\x48", b"\x4c") and len(b) > 2 and b[1] in (0x8B, 0x8D) and (b[2] & 0xC7) == 0x05:
        return "mov/lea rip-relative", False
    if b[:1] in (b"\x48", b"\x4d", b"\x4c", b"\x49") and len(b) > 1 and b[1] == 0x85:
        return "test", False
    if b[:2] == b"\x48\x83" and len(b) > 2 and b[2] == 0xEC:
        return "sub rsp", False
    return f"other ({b[:4].hex()})", False


@dataclass(frozen=True)
class ProbeSite:
    offset: int = 0                 # bytes from the function's start
    stack_adj: int = 0              # bytes %rsp moved down before the probe (return address at sp + stack_adj)
    insn: str = ""                  # the instruction the probe sits on
    emulated: bool = False
    # where each argument register's entry value is at the probe: x86 register number, or -1 when it
    # was overwritten (only for arguments the caller said it does not need); None: all still in place
    arg_regs: tuple[int, ...] | None = None
    narrow: frozenset = frozenset()  # arguments of which only the low 32 bits survive (a 32-bit move)

    def describe(self) -> str:
        if self.arg_regs is None:
            return ""
        parts = [f"arg{k}={'lost' if r < 0 else '%' + _NAMES[r]}{'(32 bit)' if k in self.narrow else ''}"
                 for k, r in enumerate(self.arg_regs) if r != ARG_REGS[k]]
        return ", ".join(parts)


@dataclass(frozen=True)
class _Effect:
    length: int
    rsp_down: int = 0               # bytes %rsp moves down
    dst: int | None = None          # register written
    src: int | None = None          # ... with a copy of this register's value
    wide: bool = True               # the write is 64-bit (else 32-bit, zero-extended)


def _modrm_len(b: bytes, i: int) -> int | None:
    """Length of a ModRM operand starting at b[i] (ModRM, SIB, displacement)."""
    if len(b) <= i:
        return None
    modrm = b[i]
    mod, rm = modrm >> 6, modrm & 7
    n = 1
    if mod == 3:
        return n
    if rm == 4:
        if len(b) <= i + 1:
            return None
        n += 1
        if mod == 0 and (b[i + 1] & 7) == 5:
            n += 4
    if mod == 0 and rm == 5:
        n += 4
    elif mod == 1:
        n += 1
    elif mod == 2:
        n += 4
    return n


def _decode(b: bytes) -> _Effect | None:
    """The effect of the instruction at b[0], or None when it is not one the walk can follow."""
    i = 0
    while i < len(b) and b[i] in (0x64, 0x65):         # %fs / %gs segment override: only changes where a load reads
        i += 1
    if b[i:i + 4] == b"\xf3\x0f\x1e\xfa":               # endbr64
        return _Effect(i + 4)
    rex = b[i] if i < len(b) and 0x40 <= b[i] <= 0x4F else 0
    if rex:
        i += 1
    if i >= len(b):
        return None
    op, w = b[i], bool(rex & 8)
    r_ext, b_ext = (rex & 4) << 1, (rex & 1) << 3
    if op == 0x6A:                                      # push imm8
        return _Effect(i + 2, rsp_down=8)
    if op == 0x68:                                      # push imm32
        return _Effect(i + 5, rsp_down=8)
    if 0xB8 <= op <= 0xBF:                              # mov imm, reg
        return _Effect(i + 1 + (8 if w else 4), dst=(op & 7) | b_ext, wide=w)
    if i + 1 >= len(b):
        return None
    modrm = b[i + 1]
    mod, reg, rm = modrm >> 6, ((modrm >> 3) & 7) | r_ext, (modrm & 7) | b_ext
    n = _modrm_len(b, i + 1)
    if n is None:
        return None
    end = i + 1 + n
    if op == 0xFF and reg & 7 == 6 and mod != 3:        # push r/m64 (a memory operand)
        return _Effect(end, rsp_down=8)
    if op in (0x83, 0x81) and w and modrm == 0xEC:      # sub $imm, %rsp
        imm = b[end] if op == 0x83 else int.from_bytes(b[end:end + 4], "little")
        size = 1 if op == 0x83 else 4
        if (op == 0x83 and imm >= 0x80) or (op == 0x81 and imm >= 1 << 31) or len(b) < end + size:
            return None
        return _Effect(end + size, rsp_down=imm)
    if op == 0x8B:                                      # mov r/m, reg
        return _Effect(end, dst=reg, src=rm if mod == 3 else None, wide=w)
    if op == 0x89 and mod == 3:                         # mov reg, reg (a store to memory is not followed)
        return _Effect(end, dst=rm, src=reg, wide=w)
    if op == 0x8D and mod != 3:                         # lea mem, reg
        return _Effect(end, dst=reg, wide=w)
    if op in (0x31, 0x33) and mod == 3:                 # xor reg, reg
        return _Effect(end, dst=rm if op == 0x31 else reg, wide=w)
    if op == 0x85:                                      # test: flags only
        return _Effect(end)
    return None


def probe_site(code: bytes, needed=range(6), max_steps: int = 12) -> ProbeSite:
    """Where to put an entry uprobe in a function whose code starts with ``code``.

    ``needed``: the argument indexes (0-5) the probe must read with their full
    64-bit value; others may be narrowed or overwritten by the instructions
    stepped over.  The probe moves only onto a push or a call (never onto a
    branch, which a loop could reach more than once per call).
    """
    insn, emulated = first_instruction(code)
    if emulated:
        return ProbeSite(0, 0, insn, True)
    needed = set(needed)
    holds: dict[int, tuple[int, bool]] = {r: (k, True) for k, r in enumerate(ARG_REGS)}   # reg -> (arg, wide)
    off = adj = 0
    for _ in range(max_steps):
        e = _decode(code[off:])
        if e is None:
            break
        if e.dst == _RSP:
            break
        if e.dst is not None:
            copied = holds.get(e.src) if e.src is not None else None
            holds.pop(e.dst, None)
            if copied is not None:
                holds[e.dst] = (copied[0], copied[1] and e.wide)
        off, adj = off + e.length, adj + e.rsp_down
        nxt, emu = first_instruction(code[off:])
        if emu and nxt in ("push", "call"):
            site = _site(off, adj, nxt, holds, needed)
            if site is not None:
                return site
    return ProbeSite(0, 0, insn, False)


def _site(off: int, adj: int, insn: str, holds: dict, needed: set) -> ProbeSite | None:
    regs, narrow = [], set()
    for k, home in enumerate(ARG_REGS):
        if holds.get(home) == (k, True):
            regs.append(home)
            continue
        full = [r for r, (a, wide) in holds.items() if a == k and wide]
        part = [r for r, (a, wide) in holds.items() if a == k and not wide]
        if full:
            regs.append(full[0])
        elif k in needed:
            return None
        elif part:
            regs.append(part[0])
            narrow.add(k)
        else:
            regs.append(-1)
    moved = tuple(regs) != ARG_REGS
    return ProbeSite(off, adj, insn, True, tuple(regs) if moved else None, frozenset(narrow))
