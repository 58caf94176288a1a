"""PMU totals and charts name a process after its main thread (issue 17, item 7)."""
from __future__ import annotations

import pandas as pd


def test_pmu_totals_name_a_process_after_its_main_thread():
    """PMU totals of a process whose last rows come from a helper thread are named after the process."""
    from ebpftoolkit.analysis.pmu import pmu_totals, process_names
    df = pd.DataFrame({"pid": [10, 10, 10, 20], "tid": [10, 11, 11, 21], "event": ["cpu-clock"] * 4,
                       "value": [1, 2, 3, 4], "comm": ["python3", "ZMQbg/IO/0", "ZMQbg/IO/0", "worker"]})
    tot = pmu_totals(df).set_index("pid")
    assert tot.loc[10, "comm"] == "python3" and tot.loc[10, "cpu-clock"] == 6
    assert tot.loc[20, "comm"] == "worker"                            # no main-thread row, no name read at stop
    assert pmu_totals(df, names={20: "server"}).set_index("pid").loc[20, "comm"] == "server"
    assert process_names(df.drop(columns="tid")).to_dict() == {10: "ZMQbg/IO/0", 20: "worker"}
