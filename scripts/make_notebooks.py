"""Write the notebooks in notebooks/ from plain cell lists (outputs stay stripped in git).

Run: .venv/bin/python scripts/make_notebooks.py
"""
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parents[1] / "notebooks"

QUICKSTART = [
    ("md", "# ebpftoolkit quick start\n\nWhat this machine can trace, every process a command starts "
           "(ExecSnoop), and the process tree. Needs root."),
    ("code", "import subprocess\nimport ebpftoolkit\nfrom ebpftoolkit import ExecSnoop, Session\n"
             "from ebpftoolkit.analysis import process_tree, render_process_tree\n\nreport = ebpftoolkit.doctor()"),
    ("md", "## ExecSnoop: this notebook's children\n\nBy default a probe traces this kernel process and "
           "everything it starts. `snoop.df` is a DataFrame, readable while the probe runs."),
    ("code", "with ExecSnoop() as snoop:\n"
             "    subprocess.run([\"sh\", \"-c\", \"ls / >/dev/null; false; /nonexistent 2>/dev/null\"])\n"
             "snoop.df[[\"ts\", \"pid\", \"ppid\", \"comm\", \"filename\", \"argv\", \"retval\", \"error\", "
             "\"exit_code\", \"duration\"]]"),
    ("code", "print(\"lost events:\", snoop.lost)\nassert snoop.lost == 0"),
    ("md", "## A session that traces one command from its first instruction"),
    ("code", "s = Session(ExecSnoop(), descendants_of=\"command\")\nwith s:\n"
             "    result = s.run([\"sh\", \"-c\", \"for i in 1 2 3; do sh -c \\\"sleep 0.0$i\\\" & done; wait; exit 2\"])\n"
             "print(\"exit code:\", result.returncode)\nprint(s.summary())"),
    ("code", "tree = process_tree(s.tables[\"exec\"], s.tables[\"processes\"])\nprint(render_process_tree(tree))\ntree"),
    ("md", "## Save and load (no root needed to load)"),
    ("code", "import tempfile\nfolder = s.save(tempfile.mkdtemp() + \"/quickstart\")\n"
             "back = Session.load(folder)\nassert back.tables[\"exec\"][\"argv\"].tolist() == s.tables[\"exec\"][\"argv\"].tolist()\n"
             "back.metadata[\"attachments\"]"),
    ("md", "## The BPF side\n\n`snoop.source` is the C that was compiled; `dump_xlated()` (while running) is "
           "the kernel's translation of it."),
    ("code", "print(snoop.source[:1500])"),
]


def build(cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
                for kind, src in cells]
    return nb


def main():
    HERE.mkdir(exist_ok=True)
    nbformat.write(build(QUICKSTART), HERE / "01_quickstart.ipynb")


if __name__ == "__main__":
    main()
