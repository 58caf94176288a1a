"""fold_path_search on exec tables of random shapes: exactly the failed tries right before a success of
the same program by the same thread are marked, and the success says how many tries it took."""
from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from ebpftoolkit.probes.execsnoop.tables import fold_path_search

_ROW = st.tuples(st.integers(1, 3), st.sampled_from(["a", "b"]), st.sampled_from(["/d1/", "/d2/", ""]),
                 st.sampled_from([0, -2, -13, -20, -8]))


def _table(rows):
    errs = {0: None, -2: "ENOENT", -13: "EACCES", -20: "ENOTDIR", -8: "ENOEXEC"}
    return pd.DataFrame({"ts": pd.to_datetime(range(len(rows)), unit="ms"), "tid": [r[0] for r in rows],
                         "argv": pd.Series([[r[1]] for r in rows], dtype=object),
                         "filename": [r[2] + r[1] for r in rows], "retval": [r[3] for r in rows],
                         "error": pd.Series([errs[r[3]] for r in rows], dtype=object)})


def _expected(rows):
    marked, attempts = [False] * len(rows), [1 if r[3] == 0 else None for r in rows]
    for tid in {r[0] for r in rows}:
        idx = [i for i, r in enumerate(rows) if r[0] == tid]
        run: list[int] = []
        for i in idx:
            name, path, rv = rows[i][1], rows[i][2], rows[i][3]
            like = run and rows[run[0]][1] == name
            if rv == 0:
                if like:
                    for j in run:
                        marked[j] = True
                    attempts[i] = len(run) + 1
                run = []
            elif rv in (-2, -13, -20) and "/" in path + name and path:
                run = run + [i] if like or not run else [i]
            else:
                run = []
    return marked, attempts


@settings(max_examples=300, deadline=None)
@given(st.lists(_ROW, max_size=25))
def test_exactly_the_tries_before_a_success_are_folded(rows):
    out = fold_path_search(_table(rows))
    marked, attempts = _expected(rows)
    assert out["path_search"].tolist() == marked
    assert [None if pd.isna(a) else int(a) for a in out["attempts"]] == attempts


def test_a_search_that_never_succeeds_stays_failures():
    rows = [(1, "x", "/d1/", -2), (1, "x", "/d2/", -2), (1, "y", "/d1/", 0)]
    out = fold_path_search(_table(rows))
    assert not out["path_search"].any() and out["attempts"].tolist()[2] == 1

