"""Users' own BPF programs as probes: BCC C text, clang-built objects, libbpf-style C (see probe.py).

Importing the package (or its ``config``) is cheap: the probe class is imported when first asked for."""
__all__ = ["CustomProbe"]


def __getattr__(name):
    if name == "CustomProbe":
        from .probe import CustomProbe
        return CustomProbe
    raise AttributeError(name)
