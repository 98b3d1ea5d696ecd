"""The notebooks in notebooks/: committed without outputs, public API only, and they execute (nbclient).

Each executed notebook ends with a cell that prints its headline numbers and figure paths as JSON;
the tests check those against the files the notebook wrote.
"""

from __future__ import annotations

import ast
import json
import math
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_quickstart.ipynb", "02_mscxr_localization.ipynb", "03_finetune_on_reports.ipynb"]


def _execute(name: str, work: Path) -> tuple[nbformat.NotebookNode, dict]:
    """Run a notebook in `work` with CXR_FGBG_NOTEBOOK_DIR=work; return it and its final JSON."""
    work.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(work)}})
    client.execute(env={**os.environ, "CXR_FGBG_NOTEBOOK_DIR": str(work)})
    text = "".join(out.get("text", "") for out in nb.cells[-1].outputs if out.output_type == "stream")
    return nb, json.loads(text)


def _assert_pngs(paths: list[str]) -> None:
    for path in paths:
        data = Path(path).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, path


def _macro_auroc(summary_json: Path) -> float:
    macro = json.loads(summary_json.read_text())["macro"]["pixel_auroc"]
    return float(macro["mean"] if isinstance(macro, dict) else macro)


# ------------------------------------------------------------------------------------------ static
@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_clean_and_uses_the_public_api(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code), "outputs are committed"
    assert any(cell.cell_type == "markdown" for cell in nb.cells)
    # One settings cell at the top: the first code cell reads the work folder from the environment.
    assert 'os.environ.get("CXR_FGBG_NOTEBOOK_DIR"' in code[0].source and "QUICK" in code[0].source
    for cell in code:
        assert "!" not in [line.strip()[:1] for line in cell.source.splitlines()], "no shell commands"
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cxr_fgbg"):
                assert not node.module.startswith("cxr_fgbg.cli"), node.module
                assert not any(part.startswith("_") for part in node.module.split(".")), node.module
                assert not any(alias.name.startswith("_") for alias in node.names), ast.unparse(node)
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                raise AssertionError(f"private attribute {node.attr} in {name}")


def test_kernel_python3_is_this_interpreter(tmp_path):
    """The tests execute the notebooks with the kernel named python3: it must be this venv's python."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys; print(sys.executable)")])
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert nb.cells[0].outputs[0]["text"].strip() == sys.executable


# ------------------------------------------------------------------------------------------ executed
@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    work = tmp_path_factory.mktemp("notebooks")
    _, result = _execute("01_quickstart.ipynb", work)
    return work, result


@pytest.mark.slow
def test_quickstart_runs_the_chain_with_figures(quickstart):
    work, result = quickstart
    assert len(result["figures"]) == 7
    _assert_pngs(result["figures"])
    assert 0.0 <= result["macro_pixel_auroc"] <= 1.0
    assert math.isfinite(result["class_location_prior_auroc"])
    assert result["macro_pixel_auroc"] == pytest.approx(_macro_auroc(Path(result["summary_json"])), abs=1e-12)
    assert result["n_evaluated"] > 0
    assert (work / "quickstart" / "finetune" / "model" / "model_index.json").is_file()


@pytest.mark.slow
def test_mscxr_notebook_reproduces_the_quickstart_evaluation(quickstart):
    """02 on 01's index and model (same seed and settings) must give 01's numbers exactly."""
    work, first = quickstart
    _, result = _execute("02_mscxr_localization.ipynb", work)
    _assert_pngs(result["figures"])
    assert sorted(result["splits"]) == ["test", "val"]
    assert result["macro_pixel_auroc"] == pytest.approx(first["macro_pixel_auroc"], rel=1e-6)
    assert result["n_evaluated"] == first["n_evaluated"]
    assert set(result["baselines_macro_pixel_auroc"]) == {"centred_gaussian", "class_location"}
    assert all(math.isfinite(v) for v in result["baselines_macro_pixel_auroc"].values())
    assert Path(result["report"]).is_file()
    table = (work / "mscxr-localization" / "analysis" / "token_auroc.csv").read_text()
    assert "finding token" in table


@pytest.mark.slow
def test_finetune_notebook_builds_what_is_missing_and_samples(tmp_path):
    """03 in an empty folder: builds the phantom index and base model itself, fine-tunes, samples."""
    _, result = _execute("03_finetune_on_reports.ipynb", tmp_path)
    assert result["steps"] == 60 and math.isfinite(result["final_loss"])
    assert result["n_samples"] == 4 and result["sample_size"] == [64, 64]
    n_tokens, *size = result["token_maps_shape"]
    assert size == result["sample_size"] and n_tokens >= 4  # start, words..., end; at the image's size
    assert result["word_maps_finite"] and all(result["word_maps_finite"])
    assert len(result["figures"]) == 5
    _assert_pngs(result["figures"])
    assert (Path(result["model"]) / "model_index.json").is_file()
    assert (tmp_path / "quickstart" / "model-init" / "model_index.json").is_file()
