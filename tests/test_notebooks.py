"""Every notebook runs under papermill at the smoke profile, and is stored clean.

The notebooks are executed once per session by the ``executed_notebooks`` fixture
(``tests/book_fixtures.py``, which calls ``book/build.py``); ``tests/test_book.py`` renders the
same executed copies, so ``make test`` never runs a notebook twice.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
pytest.register_assert_rewrite("book_fixtures")
pytest_plugins = ["book_fixtures"]
# One xdist worker runs every book test, so the notebooks are executed and built only once.
pytestmark = pytest.mark.xdist_group("book")

from book_fixtures import ROOT, build  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
IDS = [p.name for p in NOTEBOOKS]


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no .ipynb file"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_has_one_parameters_cell(path: Path):
    nb = nbformat.read(path, as_version=4)
    tagged = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: expected one cell tagged 'parameters', got {tagged}"
    cell = nb.cells[tagged[0]]
    assert cell.cell_type == "code", f"{path.name}: the parameters cell must be a code cell"
    assert "profile" in cell.source, f"{path.name}: the parameters cell must define `profile`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_stored_without_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, f"{path.name}: cells {dirty} have stored outputs or execution counts"
    assert "widgets" not in nb.metadata, f"{path.name}: stored widget state in the metadata"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_in_the_toc(path: Path):
    assert f"notebooks/{path.stem}" in build.toc_docnames(), f"add {path.name} to _toc.yml"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_executes_at_smoke_profile(path: Path, executed_notebooks):
    run = executed_notebooks[path.name]
    assert run.ok, f"{path.name} failed under papermill: {run.error} (see {run.output})"
    executed = nbformat.read(run.output, as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and 'profile = "smoke"' in injected[0].source
    assert executed.metadata["papermill"]["exception"] in (None, False)
