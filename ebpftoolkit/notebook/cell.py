"""Running a traced cell.

``shell.run_cell`` would show the cell's exception itself, but ``%%ebpf`` must stop tracing
first and then re-raise it (one traceback, after the summary), so the cell is run here with
IPython's own pieces: its input transformers, compiler cache (tracebacks show the cell's
lines), AST transformers and display hook (the last expression is displayed as in a normal
cell, unless the cell ends with ``;``).
"""
from __future__ import annotations

import ast

__all__ = ["run_cell"]


def run_cell(shell, cell: str) -> None:
    __tracebackhide__ = True     # IPython: the traceback starts at the cell, not here
    src = shell.transform_cell(cell)
    name = shell.compile.cache(src, shell.execution_count, raw_code=cell)
    tree = shell.transform_ast(shell.compile.ast_parse(src, filename=name))
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(shell.compile(tree, name, "exec"), shell.user_global_ns, shell.user_ns)
    if last is not None:
        value = eval(shell.compile(last, name, "eval"), shell.user_global_ns, shell.user_ns)
        if value is not None and not src.rstrip().endswith(";"):
            shell.displayhook(value)
