"""compare(a, b) and the report's baseline section over recordings of random shapes (hypothesis)."""
from __future__ import annotations

import math

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recordings import recordings
from ebpftoolkit.analysis import compare, compare_frames, compare_pmu
from ebpftoolkit.analysis.compare import CALL_COLUMNS
from ebpftoolkit.views import render_html

SLOW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _counts(rec) -> dict:
    gpu = rec.tables.get("gpu")
    return {} if gpu is None or not len(gpu) else gpu.groupby(["api", "call"]).size().to_dict()


@SLOW
@given(recordings(max_rows=80), recordings(max_rows=80))
def test_compare_counts_every_call_of_either_recording_exactly(a, b):
    df = compare(a, b)
    assert list(df.columns) == CALL_COLUMNS
    ca, cb = _counts(a), _counts(b)
    assert set(zip(df["api"], df["call"])) == set(ca) | set(cb)
    for row in df.itertuples():
        k = (row.api, row.call)
        assert row.count_a == ca.get(k, 0) and row.count_b == cb.get(k, 0)
        if row.count_a:
            assert math.isclose(row.count_ratio, row.count_b / row.count_a)
        else:
            assert math.isnan(row.count_ratio)             # nothing divided by zero
    assert not df.duplicated(["api", "call"]).any()


@SLOW
@given(recordings(max_rows=80))
def test_a_recording_compared_with_itself_changes_nothing(rec):
    df = compare(rec, rec)
    assert (df["count_a"] == df["count_b"]).all() and (df["bytes_a"] == df["bytes_b"]).all()
    assert df["count_ratio"].dropna().eq(1.0).all()
    p = compare_pmu(rec, rec)
    assert (p["total_a"] == p["total_b"]).all()
    f = compare_frames(rec, rec)
    assert list(f["statistic"]) == ["frames", "mean_ms", "p50_ms", "p99_ms", "max_ms"]
    assert f["a"].equals(f["b"])


@SLOW
@given(recordings(max_rows=60), recordings(max_rows=60))
def test_the_report_with_a_baseline_has_its_section(a, b):
    doc = render_html(b, baseline=a)
    assert "could not be drawn" not in doc, doc[doc.find("could not be drawn"):][:600]
    assert '<h2 id="comparison">Compared with a baseline</h2>' in doc
    assert "Compared with a baseline" not in render_html(b)


def test_pmu_totals_and_empty_sides():
    empty = {"gpu": pd.DataFrame(), "pmu": pd.DataFrame(columns=["event", "value"])}
    pmu = pd.DataFrame({"event": ["cpu-clock", "cpu-clock", "page-faults"], "value": [5, 7, 3]})
    p = compare_pmu(empty, {"pmu": pmu})
    assert p.to_dict("list")["event"] == ["cpu-clock", "page-faults"]
    assert p["total_a"].tolist() == [0, 0] and p["total_b"].tolist() == [12, 3] and p["ratio"].isna().all()
    assert compare(empty, empty).empty
    try:
        compare(1, empty)
    except TypeError as exc:
        assert "Recordings" in str(exc)
    else:
        raise AssertionError("compare(1, ...) must refuse")
