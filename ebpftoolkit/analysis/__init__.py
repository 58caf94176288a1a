"""Pure functions on session DataFrames (no BCC, no plotting)."""
from .proctree import process_tree, render_process_tree

__all__ = ["process_tree", "render_process_tree"]
