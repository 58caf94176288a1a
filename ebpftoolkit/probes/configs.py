"""Every probe family's configuration class (importing this module registers them all in
:data:`~ebpftoolkit.probes.config.CONFIG_CLASSES`, which loading a recording needs)."""
from .execsnoop.config import ExecConfig
from .gpu.config import GpuConfig
from .pmu.config import PmuConfig, SamplerConfig
from .syscalls.config import SyscallConfig

__all__ = ["ExecConfig", "GpuConfig", "PmuConfig", "SamplerConfig", "SyscallConfig"]
