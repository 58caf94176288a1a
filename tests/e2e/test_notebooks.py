"""Every notebook in notebooks/ runs top to bottom on this machine (for real, as root), and exports to HTML.

The executed notebooks are also written, as HTML, to test-artifacts/notebooks/ (gitignored) to look at.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbconvert import HTMLExporter

from support import bpf

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ARTIFACTS = ROOT / "test-artifacts" / "notebooks"

# text each notebook's outputs must contain, besides "lost events: 0"
EXPECT = {
    "01_quickstart.ipynb": ["ready: ebpftoolkit can run here", "traced: ", " execs, "],
    "02_gpu_api.ipynb": ["glDrawArrays             traced  120   program says  120", "frames, 240 draw calls"],
    "03_pmu_cache_misses.ipynb": ["hardware cache-miss counter:", "simulated cache:"],
    "04_reports.ipynb": ["trace events", "MB"],
    "05_custom_probes.ipynb": ["cat's read() calls: traced", "close(100) calls: traced 250 program says 250", "verifier rejected",
                               "getppid calls in the cell: traced 123 program says 123",
                               "STRUCT 'event' size=16 vlen=3", "// program on_close",
                               "custom probe closes2: compiled, loaded and unloaded"],
}
# how many images (matplotlib figures) each must show at least
IMAGES = {"02_gpu_api.ipynb": 3, "03_pmu_cache_misses.ipynb": 2, "04_reports.ipynb": 1, "05_custom_probes.ipynb": 1}


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS][:1] == ["01_quickstart.ipynb"]
    assert set(EXPECT) <= {p.name for p in NOTEBOOKS}


def test_notebooks_are_generated_by_the_script(tmp_path):
    """notebooks/ is what scripts/make_notebooks.py writes (edit the script, not the .ipynb)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_notebooks", ROOT / "scripts" / "make_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.HERE = tmp_path
    mod.main()
    for p in NOTEBOOKS:
        assert (tmp_path / p.name).read_text() == p.read_text(), f"{p.name}: run scripts/make_notebooks.py"


@pytest.fixture(scope="module")
def gpu_workloads():
    res = subprocess.run(["make", "-C", str(ROOT / "workloads" / "gpu")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]


@bpf
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path, gpu_workloads):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit notebooks without outputs"
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, [(o.ename, o.evalue) for o in errors]
    text = "".join(o.get("text", "") for o in outputs)
    assert "lost events: 0" in text
    for want in EXPECT.get(path.name, []):
        assert want in text, want
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= IMAGES.get(path.name, 0)

    body, _ = HTMLExporter().from_notebook_node(nb)
    assert body.lstrip().lower().startswith("<!doctype html") and "lost events: 0" in body
    assert body.count("data:image/png;base64,") >= IMAGES.get(path.name, 0)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / path.with_suffix(".html").name).write_text(body, encoding="utf-8")
