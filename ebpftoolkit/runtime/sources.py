"""Find the BPF C sources: the shared header in ``bpf_src/`` (shipped as ``ebpftoolkit.bpf_src``),
and each probe family's ``*.bpf.c`` beside its Python module."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import EbpfToolkitError

__all__ = ["common_header", "bpf_src_dir", "source_beside"]


def bpf_src_dir() -> Path:
    """The folder holding ``common.h``."""
    candidates = []
    try:
        candidates.append(Path(str(resources.files("ebpftoolkit.bpf_src"))))
    except (ModuleNotFoundError, TypeError):
        pass
    candidates.append(Path(__file__).resolve().parents[2] / "bpf_src")
    for c in candidates:
        if (c / "common.h").is_file():
            return c
    raise EbpfToolkitError("the shared BPF header bpf_src/common.h was not found next to the package; "
                           "reinstall ebpftoolkit (pip install -e . from a checkout, or the wheel)")


def common_header() -> str:
    return (bpf_src_dir() / "common.h").read_text()


def source_beside(module_file: str, name: str) -> str:
    """The BPF C file ``name`` in the folder of the Python module ``module_file``."""
    path = Path(module_file).resolve().parent / name
    try:
        return path.read_text()
    except OSError as exc:
        raise EbpfToolkitError(f"the BPF source {path} is missing ({exc.strerror}); reinstall ebpftoolkit") from None
