"""Process tree from ExecSnoop's tables."""
from __future__ import annotations

import shlex

import pandas as pd

__all__ = ["process_tree", "render_process_tree"]


def process_tree(execs: pd.DataFrame, processes: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per process: pid, ppid, depth, what it ran last, exit code, lifetime.

    ``execs`` is ``tables["exec"]``; ``processes`` (``tables["processes"]``) adds
    processes that forked without exec'ing.  Rows are in tree order (parents
    before children, siblings by start time).
    """
    ok = execs[execs["retval"] == 0].sort_values("ts")
    last = ok.groupby("pid").tail(1).set_index("pid")
    rows = {}
    if processes is not None:
        for r in processes.itertuples():
            rows[r.pid] = {"pid": r.pid, "ppid": r.ppid, "start": r.start_ts, "comm": r.comm,
                           "argv": None, "exit_code": r.exit_code, "exit_signal": r.exit_signal,
                           "lifetime": r.lifetime}
    for pid, r in last.iterrows():
        row = rows.setdefault(pid, {"pid": pid, "ppid": r["ppid"], "start": r["ts"], "exit_code": r["exit_code"],
                                    "exit_signal": r["exit_signal"], "lifetime": r["lifetime"]})
        row.update(comm=r["comm"], argv=r["argv"])
        if pd.isna(row.get("ppid")):
            row["ppid"] = r["ppid"]
    if not rows:
        return pd.DataFrame(columns=["pid", "ppid", "depth", "comm", "argv", "exit_code", "exit_signal",
                                     "lifetime", "start"])
    keys = ["pid", "ppid", "start", "comm", "argv", "exit_code", "exit_signal", "lifetime"]
    text = {"comm", "argv"}                     # object columns: traced text may hold surrogates
    df = pd.DataFrame({k: pd.Series([r.get(k) for r in rows.values()], dtype=object if k in text else None)
                       for k in keys})
    children: dict = {}
    for r in df.sort_values("start").itertuples():
        children.setdefault(r.ppid, []).append(r.pid)
    pids = set(df["pid"])
    by_start = list(df.sort_values("start", kind="stable")["pid"])
    parent = dict(zip(df["pid"], df["ppid"]))
    roots = [p for p in by_start if parent[p] not in pids or parent[p] == p]
    order, depth = [], {}
    # a loop of parents (pids reused while recording) has no root: its first-started member becomes one
    for root in roots + by_start:
        stack = [(root, 0)]
        while stack:
            pid, d = stack.pop()
            if pid in depth:
                continue
            depth[pid] = d
            order.append(pid)
            stack.extend((c, d + 1) for c in reversed(children.get(pid, [])) if c != pid)
    out = df.set_index("pid").loc[order].reset_index()
    out.insert(2, "depth", [depth[p] for p in order])
    return out


def render_process_tree(tree: pd.DataFrame, width: int = 100) -> str:
    """Indented text of :func:`process_tree`'s result."""
    lines = []
    for r in tree.itertuples():
        what = shlex.join(r.argv) if isinstance(r.argv, list) else f"({r.comm}, no exec)"
        if len(what) > width:
            what = what[: width - 3] + "..."
        if not pd.isna(r.exit_signal):
            end = f"killed by signal {r.exit_signal}"
        elif not pd.isna(r.exit_code):
            end = f"exit {r.exit_code}"
        else:
            end = "running"
        life = "" if pd.isna(r.lifetime) else f", {r.lifetime.total_seconds() * 1000:.1f} ms"
        lines.append(f"{'  ' * r.depth}{r.pid} {what}  [{end}{life}]")
    return "\n".join(lines)
