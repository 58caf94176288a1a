"""The notebook front end: ``%load_ext ebpftoolkit`` magics (:mod:`.magics`), their status line
(:mod:`.status`) and the runner of a traced cell (:mod:`.cell`).  A thin layer over the public
API: probes come from :mod:`ebpftoolkit.options`, results are Sessions and Recordings."""
from .magics import EbpfMagics, load_ipython_extension, running_sessions, unload_ipython_extension

__all__ = ["EbpfMagics", "load_ipython_extension", "unload_ipython_extension", "running_sessions"]
