"""The package's shape, checked: no import cycles (function-level imports count), the layers
import only downwards, and no module is over ~400 lines.

Layers, lowest first (a module may import its own layer and those below it):
  errors, version, text -> runtime -> probe configurations (probes/config*.py, probes/*/config.py, probes/gpu/catalogue.py)
  and scope -> analysis -> probe internals (base, decoding, attach-point resolution) -> metadata,
  storage, recording -> views -> session -> the probe classes (probes/standalone.py and each family's
  probe module: a probe used on its own runs in a Session of its own) -> doctor, options, commands, cli,
  notebook, the package itself.  A package's __init__ may re-export its submodules lazily.
Views never import the runtime or the probes: they take a Recording.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "ebpftoolkit"
MAX_LINES = 400


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PKG.rglob("*.py")}


def _type_checking_lines(tree) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            for n in node.body:
                lines.update(range(n.lineno, (n.end_lineno or n.lineno) + 1))
    return lines


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the ebpftoolkit modules it imports explicitly, anywhere in it (module level and inside
    functions), except under ``if TYPE_CHECKING:``.  ``from pkg import name`` counts as importing
    ``pkg.name`` when that is a module, else ``pkg``."""
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        skip = _type_checking_lines(tree)
        pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", 0) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")
                    up = up[: len(up) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
                targets = subs if len(subs) == len(node.names) else subs + [base]
            else:
                continue
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


PROBE_CLASSES = ("probe", "counters", "sampler")     # modules defining the probe classes users build


def layer(name: str) -> float:
    parts = name.split(".")[1:]
    if not parts:
        return 9
    top = parts[0]
    if top in ("errors", "version", "text"):
        return 0
    if top == "runtime":
        return 1
    if top in ("scope", "launch"):
        return 2
    if top == "probes" and (parts[-1] in ("config", "configs", "catalogue") or len(parts) == 1
                            or (len(parts) == 3 and parts[2] == "__init__")):
        return 2
    if top == "probes" and len(parts) == 2 and (PKG / "probes" / parts[1]).is_dir():
        return 2                               # a family's package: lazy, imports its config only
    if name == "ebpftoolkit.probes.standalone" or (top == "probes" and parts[-1] in PROBE_CLASSES):
        return 7.5                             # probes that run on their own start a Session
    if top == "analysis":
        return 3
    if top == "probes":
        return 4
    if top in ("metadata", "storage", "recording"):
        return 5
    if top == "views":
        return 6
    if top == "session":
        return 7
    return 8                                   # doctor, options, commands, cli, notebook, __main__


def test_no_import_cycles():
    found = cycles(imports(_modules()))
    assert not found, "import cycles (function-level imports count):\n" + "\n".join(" <-> ".join(c) for c in found)


def test_layers_import_only_downwards():
    bad = []
    for mod, deps in imports(_modules()).items():
        for d in deps:
            reexport = _modules()[mod].name == "__init__.py" and d.startswith(mod + ".")   # a package's lazy exports
            viewing = mod == "ebpftoolkit.recording" and d.startswith("ebpftoolkit.views")  # Recording.to_html & co.
            if layer(d) > layer(mod) and not (reexport or viewing):
                bad.append(f"{mod} (layer {layer(mod)}) imports {d} (layer {layer(d)})")
    assert not bad, "\n".join(sorted(bad))


def test_views_never_touch_the_runtime_or_the_probes():
    g = imports(_modules())
    bad = [(m, d) for m, deps in g.items() if m.startswith("ebpftoolkit.views")
           for d in deps if d.startswith(("ebpftoolkit.runtime", "ebpftoolkit.probes", "ebpftoolkit.session"))]
    assert not bad, bad


@pytest.mark.parametrize("name", sorted(_modules()))
def test_module_size(name):
    n = len(_modules()[name].read_text().splitlines())
    assert n <= MAX_LINES, f"{name} has {n} lines (at most {MAX_LINES}): split it"


def test_the_checker_finds_a_cycle_and_a_function_level_import(tmp_path):
    """The checks above can fail: a two-module cycle through a function-level import is found."""
    g = {"ebpftoolkit.a": {"ebpftoolkit.b"}, "ebpftoolkit.b": {"ebpftoolkit.a"}, "ebpftoolkit.c": set()}
    assert cycles(g) == [["ebpftoolkit.a", "ebpftoolkit.b"]]
    mods = _modules()
    g = imports(mods)
    assert "ebpftoolkit.views" in g["ebpftoolkit.recording"]           # Recording.to_html imports it inside a method
    assert "ebpftoolkit.runtime.program" in g["ebpftoolkit.session"]
