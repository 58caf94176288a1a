"""Every probe family's configuration class (importing this module registers them all in
:data:`~ebpftoolkit.probes.config.CONFIG_CLASSES`, which loading a recording needs)."""
from __future__ import annotations

from .config import CONFIG_CLASSES, ProbeConfig
from .custom.config import CustomConfig
from .execsnoop.config import ExecConfig
from .gpu.config import GpuConfig
from .pmu.config import PmuConfig, SamplerConfig
from .syscalls.config import SyscallConfig

__all__ = ["CustomConfig", "ExecConfig", "GpuConfig", "PmuConfig", "SamplerConfig", "SyscallConfig", "config_from_dict"]


def config_from_dict(kind: str, d: dict) -> ProbeConfig | None:
    """The configuration of a probe of ``kind`` from saved metadata (None for a kind this version lacks)."""
    cls = CONFIG_CLASSES.get(kind)
    return cls.from_dict(d) if cls is not None else None
