"""Where to put an entry uprobe so that the kernel emulates, not single-steps, it.

The kernel emulates a uprobe's instruction when it is a push of a register, a
call or jump with a relative target, a conditional jump, or a nop: about 1 us
per hit here.  Any other instruction is single-stepped out of line: about 14 us.
Many functions start with a few instructions of the second kind (``sub
$8,%rsp``, a rip-relative load, a push of a stack slot) before the first
emulated one; Mesa's glTexImage2D, glTexSubImage2D and glReadPixels entry
points are examples.

``probe_site`` walks such a prologue without running it.  It accepts only
instructions whose effect it can follow exactly -- stack pointer decrements,
loads and register moves into registers, pushes -- and tracks where each of the
six integer argument registers' values is when the walk stops, and how far the
stack pointer has moved (so the return address and the stack arguments can
still be found).  Anything else (a store to memory, a branch, a write to %rsp it
cannot size, an encoding capstone calls invalid) ends the walk, and the probe
stays on the function's first instruction.  Only for entry probes: a return
probe must sit on the first instruction.

Capstone decodes: where each instruction ends, its mnemonic, its operands
(registers, immediates, memory) and their sizes, and its prefix, REX and opcode
bytes.  This module decides: which instructions the kernel emulates (the rule
of arch/x86/kernel/uprobes.c, applied to capstone's opcode/REX/prefix fields in
``_kernel_emulates``), which instructions the walk may step over and what they
do to the argument registers and %rsp (``_effect``), and where the probe may go.

Over the 50,427 function symbols of swrast_dri.so, libc.so.6, libGLX_mesa.so.0,
libstdc++.so.6, libcrypto.so.3 and libLLVM-15.so.1 (Debian 12), probe_site takes
26 us a function (best of 3; the hand-written decoder it replaced: 3.7 us), and
the two agree on every function's offset, stack move and argument registers but
one: libc's thrd_create, whose ``mov $-1,%rsi`` (opcode 0xc7) the old decoder
did not know; 286 single-stepped first instructions it called "other" now get
their names (32-bit test, sub $imm32,%rsp, 32-bit rip-relative mov).
"""
from __future__ import annotations

from dataclasses import dataclass

import capstone
from capstone import x86 as _x

__all__ = ["ProbeSite", "probe_site", "first_instruction", "ARG_REGS", "PT_REGS_INDEX"]

# System V argument registers, as x86 register numbers (REX-extended): rdi, rsi, rdx, rcx, r8, r9
ARG_REGS = (7, 6, 2, 1, 8, 9)
_RSP = 4
_NAMES = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
# position of each register (by x86 number) in struct pt_regs / struct ebt_regs (bpf_src/gpu.c)
PT_REGS_INDEX = {0: 10, 1: 11, 2: 12, 3: 5, 5: 4, 6: 13, 7: 14, 8: 9, 9: 8, 10: 7, 11: 6, 12: 3, 13: 2, 14: 1, 15: 0}

_CS = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
_CS.detail = True
# capstone register id -> (x86 register number, 64-bit); 8- and 16-bit registers are absent: the walk stops on them
_NAMES32 = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi") + tuple(f"r{n}d" for n in range(8, 16))
_GPR = {getattr(_x, f"X86_REG_{n.upper()}"): (k, True) for k, n in enumerate(_NAMES)}
_GPR.update({getattr(_x, f"X86_REG_{n.upper()}"): (k, False) for k, n in enumerate(_NAMES32)})
_REG, _IMM, _MEM = _x.X86_OP_REG, _x.X86_OP_IMM, _x.X86_OP_MEM
# the sixteen conditional jumps, opcodes 0x70-0x7f and 0x0f 0x80-0x8f (not jrcxz or loop, which the kernel steps)
_JCC = {getattr(_x, f"X86_INS_J{c}") for c in
        ("O", "NO", "B", "AE", "E", "NE", "BE", "A", "S", "NS", "P", "NP", "L", "GE", "LE", "G")}
_MOVS = {_x.X86_INS_MOV, _x.X86_INS_MOVABS}


def _decode(code: bytes, off: int = 0):
    """capstone's decoding of the instruction at code[off], or None where capstone finds no valid one."""
    return next(_CS.disasm(code[off:], off, 1), None)


def _kernel_emulates(i) -> str | None:
    """The name of instruction ``i`` when the kernel emulates it in a uprobe, else None (single-stepped).

    The kernel's rule (arch/x86/kernel/uprobes.c), applied to what capstone decoded:
    - push_setup_xol_ops(): opcode 0x50-0x57 alone, or after exactly the REX
      prefix 0x41 (%r8-%r15); nothing longer (no other prefix, no REX.W);
    - branch_setup_xol_ops(): call rel32 (0xe8), jmp rel8/rel32 (0xeb, 0xe9) and
      the 16 jcc rel8/rel32, refused with a 0x66 prefix (and uprobe_init_insn()
      refuses CS/DS/ES/SS/lock prefixes outright), so only a BND (0xf2) is let by;
    - nops: we count 0x90 alone and NOPL 0x0f 0x1f /0, bare or after one 0x66
      (recent kernels' x86_nops[] / insn_is_nop() take these; older ones
      single-step NOPL).
    """
    b = i.bytes
    if i.id == _x.X86_INS_PUSH and 0x50 <= i.opcode[0] <= 0x57 and (len(b) == 1 or (len(b) == 2 and b[0] == 0x41)):
        return "push"
    if i.id == _x.X86_INS_NOP:
        nopl = (b[:2] == b"\x0f\x1f" or b[:3] == b"\x66\x0f\x1f") and i.modrm & 0x38 == 0
        return "nop" if b == b"\x90" or nopl else None
    if i.prefix[0] not in (0, 0xF2) or any(i.prefix[1:]):
        return None
    relative = len(i.operands) == 1 and i.operands[0].type == _IMM
    if i.id == _x.X86_INS_CALL and relative:
        return "call"
    if i.id == _x.X86_INS_JMP and relative:
        return "jmp"
    if i.id in _JCC:
        return "jcc"
    return None


def _name(i, code: bytes) -> tuple[str, bool]:
    if i is not None:
        emulated = _kernel_emulates(i)
        if emulated:
            return emulated, True
        ops = i.operands
        if i.id == _x.X86_INS_ENDBR64:
            return "endbr64", False
        if i.id in (_x.X86_INS_MOV, _x.X86_INS_LEA) and len(ops) == 2 and ops[1].type == _MEM \
                and ops[1].mem.base == _x.X86_REG_RIP:
            return "mov/lea rip-relative", False
        if i.id == _x.X86_INS_TEST:
            return "test", False
        if i.id == _x.X86_INS_SUB and ops[0].type == _REG and ops[0].reg == _x.X86_REG_RSP and ops[1].type == _IMM:
            return "sub rsp", False
    return f"other ({code[:4].hex()})", False


def first_instruction(code: bytes) -> tuple[str, bool]:
    """A name for the first instruction and whether the kernel emulates it in a uprobe."""
    return _name(_decode(code), code)


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
    rsp_down: int = 0               # bytes %rsp moves down
    dst: int | None = None          # register written
    src: int | None = None          # ... with a copy of this register's value
    wide: bool = True               # the write is 64-bit (else 32-bit, zero-extended)


def _effect(i) -> _Effect | None:
    """What instruction ``i`` does to the registers and %rsp, or None when the walk cannot follow it."""
    iid, ops = i.id, i.operands
    if iid in (_x.X86_INS_ENDBR64, _x.X86_INS_TEST, _x.X86_INS_CMP):   # nothing / flags only
        return _Effect()
    if iid == _x.X86_INS_PUSH:              # push imm, push m64 (a push of a register is a site, not a step)
        return _Effect(rsp_down=8) if ops[0].type != _REG and ops[0].size == 8 else None
    if iid == _x.X86_INS_SUB:                                         # sub $imm,%rsp, imm >= 0
        dst, src = ops
        if dst.type == _REG and dst.reg == _x.X86_REG_RSP and src.type == _IMM and src.imm >= 0:
            return _Effect(rsp_down=src.imm)
        return None
    if len(ops) != 2 or ops[0].type != _REG or ops[0].reg not in _GPR:    # only writes to a 32/64-bit register
        return None
    (dst, wide), src = _GPR[ops[0].reg], ops[1]
    if src.type == _REG and src.reg not in _GPR:                      # e.g. mov %ds,%eax
        return None
    if iid in _MOVS:                                                  # load, immediate, or register copy
        return _Effect(dst=dst, src=_GPR[src.reg][0] if src.type == _REG else None, wide=wide)
    if iid == _x.X86_INS_LEA or (iid == _x.X86_INS_XOR and src.type == _REG):
        return _Effect(dst=dst, wide=wide)                            # an address, or xor reg,reg (zeroing)
    return None


def probe_site(code: bytes, needed=range(6), max_steps: int = 12) -> ProbeSite:
    """Where to put an entry uprobe in a function whose code starts with ``code``.

    ``needed``: the argument indexes (0-5) the probe must read with their full
    64-bit value; others may be narrowed or overwritten by the instructions
    stepped over.  The probe moves onto a push or a call, or onto the function's
    first branch (a jcc or jmp: tiny wrappers such as Mesa's glFlush open with
    loads and a compare, no push) when no branch in ``code`` jumps back into the
    instructions before it, so that every call runs the probed instruction once.
    """
    i = _decode(code)
    insn, emulated = _name(i, code)
    if emulated:
        return ProbeSite(0, 0, insn, True)
    needed = set(needed)
    holds: dict[int, tuple[int, bool]] = {r: (k, True) for k, r in enumerate(ARG_REGS)}   # reg -> (arg, wide)
    off = adj = 0
    for _ in range(max_steps):
        e = _effect(i) if i is not None else None
        if e is None or e.dst == _RSP:
            break
        if e.dst is not None:
            copied = holds.get(e.src) if e.src is not None else None
            holds.pop(e.dst, None)
            if copied is not None:
                holds[e.dst] = (copied[0], copied[1] and e.wide)
        off, adj = off + i.size, adj + e.rsp_down
        i = _decode(code, off)
        nxt = _kernel_emulates(i) if i is not None else None
        if nxt in ("push", "call") or (nxt in ("jcc", "jmp") and not _jumps_into(code, off)):
            site = _site(off, adj, nxt, holds, needed)
            if site is not None:
                return site
        if nxt in ("jcc", "jmp"):
            break                                   # past a branch, the path is not straight any more
    return ProbeSite(0, 0, insn, False)


def _jumps_into(code: bytes, end: int) -> bool:
    """Whether a jump anywhere in ``code`` (decoded from its start) lands in [0, ``end``] (a loop back to
    the start included), or a call in (0, ``end``]: the instructions up to a branch site would then run
    more than once per call.  Code that does not decode up to the site counts as yes."""
    off = 0
    while off < len(code):
        i = _decode(code, off)
        if i is None:
            return off <= end            # could not see past it: only safe beyond the site
        rel = len(i.operands) == 1 and i.operands[0].type == _IMM
        if rel and (i.id in _JCC or i.id == _x.X86_INS_JMP) and 0 <= i.operands[0].imm <= end:
            return True
        if rel and i.id == _x.X86_INS_CALL and 0 < i.operands[0].imm <= end:
            return True
        off += i.size
    return False


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
