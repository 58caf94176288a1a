"""Pure functions on session DataFrames (no BCC, no plotting)."""
from .answers import most_bytes, slowest_calls, slowest_frames
from .compare import compare, compare_frames, compare_pmu
from .proctree import process_tree, render_process_tree

__all__ = ["process_tree", "render_process_tree", "compare", "compare_frames", "compare_pmu", "slowest_calls",
           "most_bytes", "slowest_frames"]
