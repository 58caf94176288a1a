"""GPU API tracing: OpenGL, Vulkan, OpenCL and CUDA calls via uprobes."""
from .catalogue import CATALOGUE, CATEGORIES, CallSpec, add_call
from .config import GpuConfig

__all__ = ["GpuTrace", "GpuConfig", "CATALOGUE", "CATEGORIES", "CallSpec", "add_call", "APIS", "GPU_COLUMNS"]


def __getattr__(name):          # the probe imports the runtime: only when asked for
    if name in ("GpuTrace", "APIS", "GPU_COLUMNS"):
        from . import probe
        return getattr(probe, name)
    raise AttributeError(name)
