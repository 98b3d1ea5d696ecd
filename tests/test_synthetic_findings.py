"""D'_s for chest X-ray findings: y_f per finding from the training phrases, indexed like MS-CXR for localize."""

from __future__ import annotations

import pandas as pd

from cxr_fgbg.attention.batch import read_index
from cxr_fgbg.masks.synthetic import finding_prompts, synthesize_dataset, write_findings_index

Y_B = "No acute cardiopulmonary process."


def test_finding_prompts_take_the_most_frequent_training_phrase(tmp_path):
    rows = [
        ("Pleural Effusion", "Small left pleural effusion.", "train"),
        ("Pleural Effusion", "Bilateral pleural effusions, moderate.", "train"),
        ("Pleural Effusion", "Small left pleural effusion.", "train"),
        ("Pleural Effusion", "Bilateral pleural effusions, moderate.", "test"),  # held out: never counted
        ("Pleural Effusion", "Bilateral pleural effusions, moderate.", "val"),
        ("Edema", "Mild pulmonary edema.", "train"),
        ("Edema", "Moderate cardiomegaly with mild pulmonary edema.", "train"),  # a tie: alphabetical order
        ("Pneumothorax", "Small right apical pneumothorax.", "test"),  # no training phrase: no prompt
    ]
    table = tmp_path / "ms_cxr.csv"
    pd.DataFrame(rows, columns=["category_name", "label_text", "split"]).to_csv(table, index=False)
    assert finding_prompts(table) == [
        ("Edema", "Mild pulmonary edema."),
        ("Pleural Effusion", "Small left pleural effusion."),
    ]


def test_synthetic_findings_are_localised_with_the_findings_vocabulary(tiny_pipeline, tiny_model_dir, tmp_path):
    from cxr_fgbg.attention.batch import localize_index
    from cxr_fgbg.attention.localizer import Localizer
    from cxr_fgbg.attention.settings import LocalizeSettings
    from cxr_fgbg.masks.settings import SyntheticSettings

    prompts = [("Lung Opacity", "Patchy left basilar opacity, likely atelectasis."), ("Edema", "Mild pulmonary edema.")]
    samples = synthesize_dataset(tiny_pipeline, prompts, Y_B, tmp_path / "syn",
                                 SyntheticSettings(images_per_prompt=1, num_inference_steps=2), show_progress=False)
    index = write_findings_index(samples)
    frame = pd.read_csv(index, keep_default_na=False)
    assert list(frame["category_name"]) == ["Lung Opacity", "Edema"]
    assert list(frame["label_text"]) == [p for _, p in prompts] and set(frame["boxes"]) == {"[]"}

    rows, root = read_index(tmp_path / "syn")
    assert root == (tmp_path / "syn").resolve() and all("words" not in row for row in rows)  # vocabulary words
    localizer = Localizer(tiny_model_dir, LocalizeSettings(timesteps=[251], overlays=0, device="cpu"))
    summary = localize_index(localizer, tmp_path / "syn", tmp_path / "heatmaps", prompt_source="phrase",
                             progress=False)
    assert (summary.computed, summary.skipped) == (2, 0)
    import numpy as np

    with np.load(tmp_path / "heatmaps" / "maps" / "synthetic_lung_opacity_00000.npz") as data:
        assert data["words"].tolist() == ["opacity"]  # the finding's vocabulary, not the concept's words "lung opacity"
    heatmaps = pd.read_csv(tmp_path / "heatmaps" / "heatmaps.csv", keep_default_na=False)
    assert list(heatmaps["split"]) == ["train", "train"]
