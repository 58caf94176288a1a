"""Which files the GPU follower probes: matched by content (soname family, the function
defined, or a program), never by path; on real files of this machine."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ebpftoolkit.probes.gpu.catalogue import calls_for
from ebpftoolkit.probes.gpu.follow import _in_family, file_key, mapped_files, matching_specs
from ebpftoolkit.runtime.elf import elf_identity

ROOT = Path(__file__).resolve().parents[2]
WHEEL = ROOT / "tests" / ".wheels" / "nvidia" / "cuda_runtime" / "lib" / "libcudart.so.12"
SYSTEM = Path("/usr/local/cuda/lib64/libcudart.so.13")
CUDA = calls_for(["cuda"])
CL = calls_for(["opencl"])


def names(specs):
    return {s.name for s in specs}


@pytest.mark.parametrize("lib", [WHEEL, SYSTEM], ids=["wheel-12", "toolkit-13"])
def test_both_runtime_versions_are_matched_with_their_calls(lib):
    if not lib.is_file():
        pytest.fail(f"{lib} is missing (scripts/setup.sh installs it)")
    got = names(matching_specs(str(lib), CUDA))
    assert {"cudaMalloc", "cudaFree", "cudaMemcpy", "cudaLaunchKernel"} <= got
    assert not any(n.startswith("cu") and not n.startswith("cuda") for n in got)   # driver calls: libcuda's


def test_a_renamed_copy_is_matched_by_its_soname_not_its_path(tmp_path):
    copy = tmp_path / "libwhatever.so"
    shutil.copy(WHEEL, copy)
    assert names(matching_specs(str(copy), CUDA)) == names(matching_specs(str(WHEEL), CUDA))


def test_a_library_of_another_family_is_not_matched_even_if_it_defines_the_name(tmp_path):
    src = tmp_path / "x.c"
    src.write_text("int cudaMalloc(void **p, unsigned long n) { return 0; }\n")
    so = tmp_path / "libmine.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libmine.so", "-o", str(so), str(src)], check=True)
    assert matching_specs(str(so), CUDA) == []
    fam = tmp_path / "libcudart.so.99"
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libcudart.so.99", "-o", str(fam), str(src)], check=True)
    assert names(matching_specs(str(fam), CUDA)) == {"cudaMalloc"}


def test_programs_match_cuda_only_when_they_define_it(tmp_path):
    assert matching_specs("/bin/true", CUDA) == []
    assert matching_specs("/bin/true", CL) == []              # OpenCL is never linked into programs
    src = tmp_path / "p.c"
    src.write_text("int cudaMalloc(void **p, unsigned long n) { return 35; }\nint main(void) { return 0; }\n")
    exe = tmp_path / "p"
    subprocess.run(["gcc", "-o", str(exe), str(src)], check=True)
    assert elf_identity(str(exe)).executable
    assert names(matching_specs(str(exe), CUDA)) == {"cudaMalloc"}
    assert matching_specs(str(exe), CL) == []


def test_not_elf_and_unreadable_files_match_nothing(tmp_path):
    (tmp_path / "t.txt").write_text("cudaMalloc\0")
    assert matching_specs(str(tmp_path / "t.txt"), CUDA) == []
    assert matching_specs(str(tmp_path / "missing.so"), CUDA) == []
    (tmp_path / "short").write_bytes(b"\x7fELF\x02")
    assert matching_specs(str(tmp_path / "short"), CUDA) == []


def test_soname_families():
    assert _in_family("libcudart.so.12", ("libcudart.so",))
    assert _in_family("libcudart.so.13", ("libcudart.so",))
    assert not _in_family("libcudart_static.so", ("libcudart.so",))
    assert _in_family("libOpenCL.so.1", ("libOpenCL.so.1",))
    assert _in_family("libOpenCL.so", ("libOpenCL.so.1",))
    assert not _in_family("libcuda.so.1", ("libcudart.so",))
    assert not _in_family("libcudart.so.12", ("/opt/x/libcudart.so.12",))


def test_this_process_maps_its_interpreter_and_libc():
    mine = mapped_files(os.getpid())
    assert any(Path(p).name.startswith("libc.so") for p in mine), mine
    keys = {file_key(os.stat(p)) for p in mine}
    assert len(keys) == len(mine)                             # one entry per file


def test_library_stems_of_system_files_and_wheel_copies():
    from ebpftoolkit.probes.gpu.follow import _stem
    assert _stem("/usr/lib/x86_64-linux-gnu/libcudart.so.12") == "libcudart"
    assert _stem("torch/lib/libcudart-9335f6a2.so.12") == "libcudart"        # a wheel's renamed copy
    assert _stem("libOpenCL.so") == "libOpenCL" and _stem("libX11.so.6.4.0") == "libX11"
    assert _stem("libcudart_static.a") == "libcudart_static.a"


def test_libraries_of_no_family_are_passed_over_before_tracing(tmp_path):
    """Files of the linker cache that no catalogue family names are marked known at start (a process
    mapping them is not held); the families' own files, and files seen already, are left alone."""
    from ebpftoolkit.probes.gpu.follow import Follower, file_key

    class Known:
        def __init__(self):
            self.keys = []

        def update(self, key, value):
            self.keys.append(key)
    paths = {}
    for name in ("libX11.so.6", "libcudart.so.12", "libOpenCL.so.1", "libstdc++.so.6", "libGL.so.1"):
        paths[name] = tmp_path / name
        paths[name].write_bytes(b"\0" * (len(name) + 1))
    known = Known()
    f = Follower([], lambda path, specs: 0, known)
    f.add_start_file(str(paths["libGL.so.1"]), ["opengl"], 3, "at start")
    n = f.pass_over([str(p) for p in paths.values()] + [str(tmp_path / "gone.so")], {"libcudart.so", "libOpenCL.so.1"})
    passed = {(ino, dev) for ino, dev, _ in known.keys}
    want = {file_key(paths[k].stat())[::-1] for k in ("libX11.so.6", "libstdc++.so.6")}
    assert n == 2 and passed == want
