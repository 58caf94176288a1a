"""Find the BPF C sources, from a checkout or from an installed wheel."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import EbpfToolkitError

__all__ = ["bpf_source", "bpf_src_dir"]


def bpf_src_dir() -> Path:
    """The folder holding ``common.h`` and the probes' ``*.c`` files."""
    candidates = []
    try:
        candidates.append(Path(str(resources.files("ebpftoolkit.bpf_src"))))
    except (ModuleNotFoundError, TypeError):
        pass
    candidates.append(Path(__file__).resolve().parents[2] / "bpf_src")
    for c in candidates:
        if (c / "common.h").is_file():
            return c
    raise EbpfToolkitError(
        "the BPF C sources (bpf_src/) were not found next to the package; "
        "reinstall ebpftoolkit (pip install -e . from a checkout, or the wheel)"
    )


def bpf_source(name: str) -> str:
    return (bpf_src_dir() / name).read_text()
