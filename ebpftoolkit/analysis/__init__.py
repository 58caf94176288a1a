"""Pure functions on session DataFrames (no BCC, no plotting)."""
from .compare import compare, compare_frames, compare_pmu
from .proctree import process_tree, render_process_tree

__all__ = ["process_tree", "render_process_tree", "compare", "compare_frames", "compare_pmu"]
