"""GPU API tracing: OpenGL, Vulkan, OpenCL and CUDA calls via uprobes."""
from .catalogue import CATALOGUE, CallSpec, add_call
from .probe import APIS, GPU_COLUMNS, GpuTrace

__all__ = ["GpuTrace", "CATALOGUE", "CallSpec", "add_call", "APIS", "GPU_COLUMNS"]
