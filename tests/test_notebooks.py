"""The notebooks: committed without outputs, and each runs top to bottom in its small setting.

Every ``notebooks/*.ipynb`` is executed with nbclient in a fresh ``python3`` kernel (the
venv's ipykernel), with ``JAXGAP_NOTEBOOK_SMALL=1`` (each notebook then shrinks every size),
``MPLBACKEND=Agg`` and XLA's backend at ``-O0`` (faster compiles), in a temporary working
directory so that nothing is written into the repository. A cell that raises fails the test
with the cell's traceback.
"""

import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = (
    "000_quickstart.ipynb",
    "100_gap_curves.ipynb",
    "200_toy_model.ipynb",
    "300_inference_trajectories.ipynb",
    "400_conditioning_guidance.ipynb",
)
CELL_TIMEOUT_S = 300
MAX_STREAM_LINES = 40
SMALL_FLAG = 'SMALL = os.environ.get("JAXGAP_NOTEBOOK_SMALL") == "1"'
# Private names of the package: notebooks use the public API only.
PRIVATE_IMPORT = re.compile(r"jaxgap(\.\w+)*\._\w+|from\s+jaxgap(\.\w+)*\s+import\s+[^\n]*\b_\w+")


def _read(path):
    return nbformat.read(str(path), as_version=4)


def _ids(paths):
    return [p.stem for p in paths]


def test_expected_notebooks_exist():
    missing = [name for name in EXPECTED if not (NOTEBOOK_DIR / name).is_file()]
    assert not missing, f"missing notebooks in {NOTEBOOK_DIR}: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_committed_clean(path):
    """Valid nbformat v4, no outputs, no execution counts, the SMALL convention, public API."""
    nb = _read(path)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path.name}: no code cells"
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: code cells {dirty} hold outputs or execution counts; "
                       "commit notebooks without outputs")
    assert SMALL_FLAG in code[0].source, (
        f"{path.name}: the first code cell must set {SMALL_FLAG} and size everything by it")
    private = [m.group(0) for c in code for m in PRIVATE_IMPORT.finditer(c.source)]
    assert not private, f"{path.name}: uses private names {private}; use the public API"


def _kernel_prefix(client):
    """The kernel's ``sys.prefix`` (its environment), asked through the running kernel."""
    cell = nbformat.v4.new_code_cell("import sys; print(sys.prefix)")
    client.execute_cell(cell, 0)
    return "".join(o.get("text", "") for o in cell.outputs).strip()


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs_small(path, tmp_path, monkeypatch):
    """Execute every cell with JAXGAP_NOTEBOOK_SMALL=1 in a temporary working directory."""
    monkeypatch.setenv("JAXGAP_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # (the kernel inherits conftest.py's cheaper-compile XLA_FLAGS: compile time dominates)
    nb = _read(path)
    before = sorted(p.name for p in NOTEBOOK_DIR.iterdir())
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    with client.setup_kernel():
        prefix = _kernel_prefix(client)
        assert Path(prefix).resolve() == Path(sys.prefix).resolve(), (
            f"the 'python3' kernel runs in the environment {prefix}, not in this one "
            f"({sys.prefix}); install ipykernel into this environment")
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)  # raises CellExecutionError on a failing cell
    not_run = [i for i, c in enumerate(nb.cells)
               if c.cell_type == "code" and c.execution_count is None]
    # Issue 12: progress in a notebook printed an "IProgress not found" warning per cell and
    # ~600 lines of text bars; it is now a log line every few seconds.
    for i, c in enumerate(nb.cells):
        text = "".join(o.get("text", "") for o in c.get("outputs", [])
                       if o.get("output_type") == "stream")
        assert "IProgress" not in text, f"{path.name}, cell {i}: {text[:300]}"
        assert len(text.splitlines()) <= MAX_STREAM_LINES, (
            f"{path.name}, cell {i} printed {len(text.splitlines())} lines: {text[:300]}")
    assert not not_run, f"{path.name}: code cells {not_run} did not run"
    assert sorted(p.name for p in NOTEBOOK_DIR.iterdir()) == before, (
        f"{path.name}: running it wrote into {NOTEBOOK_DIR}")
