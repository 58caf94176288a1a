"""Where entry uprobes go (ebpftoolkit/runtime/x86.py): decoded prologues and real attach points.

The byte strings are the opening instructions of Mesa 22.3's (Debian 12 swrast_dri.so)
glTexImage2D, glTexSubImage2D and glReadPixels entry points, as objdump shows them.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from ebpftoolkit.runtime.x86 import ARG_REGS, probe_site

TEX_IMAGE_2D = bytes.fromhex("4883ec08488b05e53c750164488b00ff7424206a00448b5424284152")
TEX_SUB_IMAGE_2D = bytes.fromhex("4883ec0889f8488b3de31975014c8d1da649fb0064488b3f4153")
READ_PIXELS = bytes.fromhex("4883ec08ff74241068ffffff7fe8") + b"\0" * 4


def test_mesa_tex_image_2d_probe_after_stack_moves():
    # sub $8,%rsp; mov rip,%rax; mov %fs:(%rax),%rax; push 0x20(%rsp); push $0; mov 0x28(%rsp),%r10d | push %r10
    s = probe_site(TEX_IMAGE_2D)
    assert (s.offset, s.stack_adj, s.insn, s.emulated, s.arg_regs) == (26, 24, "push", True, None)


def test_mesa_tex_sub_image_2d_first_argument_followed_into_eax():
    # sub $8,%rsp; mov %edi,%eax; mov rip,%rdi; lea rip,%r11; mov %fs:(%rdi),%rdi | push %r11
    s = probe_site(TEX_SUB_IMAGE_2D, needed={4, 5})
    assert (s.offset, s.stack_adj, s.insn) == (24, 8, "push")
    assert s.arg_regs == (0,) + ARG_REGS[1:] and s.narrow == {0}
    assert s.describe() == "arg0=%rax(32 bit)"
    # a call that needs argument 0 whole cannot use a 32-bit copy: the probe stays on the first instruction
    assert probe_site(TEX_SUB_IMAGE_2D, needed={0}).offset == 0


def test_mesa_read_pixels_probe_on_the_call():
    s = probe_site(READ_PIXELS)
    assert (s.offset, s.stack_adj, s.insn) == (13, 24, "call")


@pytest.mark.parametrize("code, why", [
    (bytes.fromhex("4883ec08488904245352"), "a store to memory: mov %rax,(%rsp)"),
    (bytes.fromhex("4883ec0875fe53"), "a branch before the first push"),
    (bytes.fromhex("4883ec084889fc53"), "a write to %rsp it cannot size: mov %rdi,%rsp"),
    (bytes.fromhex("4883ec80" + "53"), "sub of a negative immediate (add)"),
])
def test_walk_stops_where_it_cannot_follow(code, why):
    assert (probe_site(code).offset, probe_site(code).emulated) == (0, False), why


def test_copy_of_rsp_into_another_register_is_followed():
    s = probe_site(bytes.fromhex("4883ec084889e553"))                     # sub $8,%rsp; mov %rsp,%rbp | push %rbx
    assert (s.offset, s.stack_adj, s.arg_regs) == (7, 8, None)


def test_overwritten_needed_argument_keeps_the_probe_at_the_start():
    code = bytes.fromhex("4883ec0831f653")                                  # sub $8,%rsp; xor %esi,%esi | push %rbx
    assert probe_site(code, needed={1}).offset == 0
    s = probe_site(code, needed={0})
    assert s.offset == 6 and s.arg_regs[1] == -1 and "arg1=lost" in s.describe()


@pytest.mark.skipif(shutil.which("objdump") is None, reason="binutils' objdump is not installed")
def test_every_moved_attach_point_on_this_machine_is_an_instruction_boundary():
    """objdump, an independent decoder, must show a push, a call or a branch starting exactly where each moved
    probe sits."""
    from ebpftoolkit.probes.gpu.catalogue import calls_for
    from ebpftoolkit.probes.gpu.resolve import resolve

    points, _ = resolve(calls_for(["opengl", "vulkan", "opencl", "cuda"]))
    moved = [p for p in points if p.site.offset]
    assert moved, "no attach point on this machine needed a moved probe (Mesa's glTexImage2D does on Debian 12)"
    for p in moved:
        out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", f"--start-address={p.vaddr:#x}",
                              f"--stop-address={p.vaddr + p.site.offset + 8:#x}", p.path],
                             capture_output=True, text=True, check=True).stdout
        starts = {int(m.group(1), 16): m.group(2) for m in re.finditer(r"^\s*([0-9a-f]+):\s+(\S+)", out, re.M)}
        at = p.vaddr + p.site.offset
        assert at in starts, (p.spec.name, hex(at), out)
        assert starts[at].startswith(("push", "call", "j")), (p.spec.name, starts[at])
        if starts[at].startswith("j"):      # a branch site
            assert p.site.insn in ("jcc", "jmp")
