"""docs/notebooks/quickstart.ipynb runs top to bottom on a real Jupyter kernel (ipykernel):
on the tiny generated data here, on the real data in the slow tier."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REAL_DATA, REPO

pytestmark = pytest.mark.integration
NOTEBOOK = REPO / "docs" / "notebooks" / "quickstart.ipynb"


def execute(workdir: Path) -> object:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute()  # CellExecutionError when a cell raises
    return nb


def test_the_notebook_is_committed_without_outputs() -> None:
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_the_notebook_runs_on_tiny_data(tmp_path: Path, tiny_data: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLEXP_DATA_DIR", str(tiny_data))
    monkeypatch.setenv("DLEXP_NOTEBOOK_QUICK", "1")
    nb = execute(tmp_path)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the figures, inline
    assert len(list((tmp_path / "outputs" / "multiruns").glob("*/[0-3]"))) == 4
    text = "".join(o.get("text", "") for o in outputs)
    assert "predicted:" in text
    # progress bars render as a widget, or as text a line per bar, not a line per update
    runs, bars = text.count("GPU available"), [ln for ln in text.split("\n") if "it/s" in ln]
    assert runs >= 6 and len(bars) <= 20 * runs


@pytest.mark.slow
def test_the_notebook_runs_on_real_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not REAL_DATA or not (Path(REAL_DATA) / "MNIST" / "raw").is_dir():
        pytest.skip("real data not found: set DLEXP_DATA_DIR")
    monkeypatch.setenv("DLEXP_DATA_DIR", REAL_DATA)
    execute(tmp_path)
