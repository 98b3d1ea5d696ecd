"""`cxr-fgbg demo --quick` end to end: every stage runs, the report holds finite numbers, a rerun resumes."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from typer.testing import CliRunner

from cxr_fgbg.cli.app import app

STAGES = ["phantom", "index", "model", "finetune", "localize", "evaluate", "analysis", "conditioning", "segmentation"]


@pytest.mark.slow
def test_quick_demo_end_to_end_and_resume(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    stages = json.loads((out / "stages.json").read_text())
    assert list(stages) == STAGES
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    report = (out / "report.md").read_text()
    assert "Localisation, test split" in report and "Segmentation ablation" in report

    summary = json.loads((out / "evaluation-test" / "summary.json").read_text())
    macro = summary["macro"]
    for metric in ("pixel_auroc", "cnr_biovil", "miou", "pointing_game"):
        value = macro[metric]["mean"] if isinstance(macro[metric], dict) else macro[metric]
        assert value is not None and math.isfinite(value), (metric, value)
        if metric == "pixel_auroc":
            assert 0.0 <= value <= 1.0
    assert "centred_gaussian" in summary["baselines"] and "class_location" in summary["baselines"]

    conditioning = pd.read_csv(out / "conditioning" / "conditioning_vs_attention.csv")
    assert len(conditioning) > 0 and conditioning["auroc_conditioning"].between(0, 1).all()
    assert "Does the model bind the report to the finding?" in report

    ablation = pd.read_csv(out / "segmentation" / "ablation.csv")
    assert list(ablation["masks"]) == ["M_pre", "M_crop", "M", "U-Net(M_pre)", "U-Net(M)", "U-Net(M + D'_s)"]
    with_synthetic = ablation.set_index("masks").loc["U-Net(M + D'_s)"]
    assert math.isfinite(with_synthetic["iou"]) and 0.0 <= with_synthetic["accuracy"] <= 1.0
    assert (out / "masks" / "D_s" / "M" / "masks.csv").is_file() and "D'_s:" in stages["segmentation"]["summary"]

    again = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert again.output.count("done before, skipped") == len(STAGES)


def test_presets_sit_under_what_the_user_set():
    from cxr_fgbg.config import load_config
    from cxr_fgbg.demo import FULL_PRESET, QUICK_PRESET, demo_config

    quick = demo_config(load_config(None, ["finetune.steps=70", "phantom.size=128"]), quick=True)
    assert quick.finetune.steps == 70 and quick.phantom.size == 128  # the user's values win
    assert quick.phantom.studies == QUICK_PRESET["phantom"]["studies"]  # the preset fills the rest
    full = demo_config(load_config(None), quick=False)
    assert full.finetune.steps == FULL_PRESET["finetune"]["steps"]
    assert full.localize.preset == "paper" and full.threads == 1
