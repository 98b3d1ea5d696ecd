"""The real-data configs (configs/*.yaml) and the `paths` section: they load, resolve, fail clearly."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cxr_fgbg.cli.app import app
from cxr_fgbg.config import load_config
from cxr_fgbg.errors import ConfigError
from cxr_fgbg.paths_settings import require_paths

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
REAL = ["mimic_roentgen", "mscxr_eval", "cub", "dogs", "cars", "h36m"]
NATURAL = {"cub": "bird", "dogs": "dog", "cars": "car", "h36m": "person"}


def _run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_every_shipped_config_loads_with_its_paths():
    shipped = {p.stem for p in CONFIGS.glob("*.yaml") if not p.name.startswith("accelerate_")}
    assert set(REAL) <= shipped
    for name in shipped:
        load_config(CONFIGS / f"{name}.yaml")
    mimic = load_config(CONFIGS / "mimic_roentgen.yaml")
    assert mimic.paths.mimic_root == "${MIMIC_CXR_ROOT}" and mimic.paths.ms_cxr_csv == "${MS_CXR_CSV}"
    assert mimic.paths.model == "${SD_MODEL}"


def test_mimic_roentgen_is_roentgen_style():
    ft = load_config(CONFIGS / "mimic_roentgen.yaml").finetune
    assert ft.objective == "impression" and ft.learning_rate == 5e-5 and ft.resolution == 512
    assert ft.per_device_batch_size * ft.gradient_accumulation_steps * 8 == 256  # 8 GPUs, one node
    assert ft.mixed_precision in ("bf16", "fp16") and not ft.train_text_encoder


def test_mscxr_eval_is_the_paper_preset_on_eight_classes():
    cfg = load_config(CONFIGS / "mscxr_eval.yaml")
    loc = cfg.localize
    assert (loc.preset, loc.num_inference_steps, loc.t0, loc.prompt) == ("paper", 50, 40, "phrase")
    assert sorted(loc.vocabulary) == sorted([
        "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Lung Opacity", "Pleural Effusion",
        "Pneumonia", "Pneumothorax",
    ])
    from cxr_fgbg.attention.heatmap import select_timesteps

    timesteps = select_timesteps(loc)
    assert len(timesteps) == 40 and max(timesteps) == 781 and min(timesteps) == 1


@pytest.mark.parametrize("name", sorted(NATURAL))
def test_natural_configs_follow_the_paper(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.paths.natural_dataset == name
    assert cfg.data.natural.prompt_template.format(concept=cfg.data.natural.concepts[name]) == (
        f"a photo of a {NATURAL[name]}"
    )
    assert cfg.finetune.objective == "fgbg"
    seg = cfg.segment
    assert (seg.steps, seg.batch_size, seg.learning_rate, seg.crop_size) == (12000, 32, 1e-3, 128)


def test_require_paths_expands_env_and_home(tmp_path, monkeypatch):
    (tmp_path / "mimic").mkdir()
    monkeypatch.setenv("CXR_TEST_ROOT", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = load_config(None, ["paths.mimic_root=${CXR_TEST_ROOT}/mimic", "paths.model=~/mimic"])
    found = require_paths(cfg, "mimic_root", "model")
    assert found == {"mimic_root": tmp_path / "mimic", "model": tmp_path / "mimic"}


def test_require_paths_errors_name_key_value_and_file(tmp_path, monkeypatch):
    monkeypatch.delenv("CXR_SURELY_UNSET", raising=False)
    cfg = load_config(CONFIGS / "mimic_roentgen.yaml", ["paths.mimic_root=/nonexistent/mimic"])
    with pytest.raises(ConfigError) as missing:
        require_paths(cfg, "mimic_root", source="configs/mimic_roentgen.yaml")
    text = str(missing.value)
    assert "paths.mimic_root" in text and "/nonexistent/mimic" in text and "configs/mimic_roentgen.yaml" in text
    with pytest.raises(ConfigError, match=r"paths\.natural_root is not set"):
        require_paths(cfg, "natural_root")
    cfg = load_config(None, ["paths.ms_cxr_csv=${CXR_SURELY_UNSET}/x.csv"])
    with pytest.raises(ConfigError, match="environment variable CXR_SURELY_UNSET is not set"):
        require_paths(cfg, "ms_cxr_csv")


def test_index_cli_names_the_missing_key_and_path(tmp_path):
    result = _run("index", "--config", str(CONFIGS / "mimic_roentgen.yaml"),
                  "--set", "paths.mimic_root=/nonexistent", "--out", str(tmp_path / "index"))
    assert result.exit_code != 0
    message = result.output + str(result.exception or "")
    assert "paths.mimic_root" in message and "/nonexistent" in message and "mimic_roentgen.yaml" in message
    assert not (tmp_path / "index").exists()


def test_index_without_mimic_flag_and_no_config_path_is_a_clear_error(tmp_path):
    result = _run("index", "--out", str(tmp_path / "index"))
    assert result.exit_code != 0
    message = result.output + str(result.exception or "")
    assert "--mimic" in message and "paths.mimic_root" in message


def test_index_reads_paths_from_the_config(tmp_path):
    from cxr_fgbg.data.phantom import generate_phantom

    generate_phantom(tmp_path / "ph", studies=20, seed=0, size=128, progress=False)
    mimic = tmp_path / "ph" / "mimic-cxr"
    csv = tmp_path / "ph" / "ms-cxr" / "MS_CXR_Local_Alignment_v1.1.0.csv"
    out = tmp_path / "index"
    result = _run(
        "index", "--config", str(CONFIGS / "mimic_roentgen.yaml"), "--set", f"paths.mimic_root={mimic}",
        "--set", f"paths.ms_cxr_csv={csv}", "--set", "paths.reports_root=null", "--set", "data.index.workers=1",
        "--no-progress", "--out", str(out),
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    studies = pd.read_csv(out / "studies.csv")
    ms_cxr = pd.read_csv(out / "ms_cxr.csv")
    truth = pd.read_csv(csv)
    assert len(studies) > 0
    assert len(ms_cxr) == len(truth.drop_duplicates(["dicom_id", "category_name", "label_text"]))
    # the same as giving the folders as flags
    flags = tmp_path / "index-flags"
    result = _run("index", "--mimic", str(mimic), "--ms-cxr", str(csv), "--set", "data.index.workers=1",
                  "--no-progress", "--out", str(flags))
    assert result.exit_code == 0, result.output + repr(result.exception)
    for table in ("studies.csv", "ms_cxr.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(out / table), pd.read_csv(flags / table))
    # MS-CXR patients are held out of the fine-tuning rows, as the config says
    assert not set(studies.loc[studies.split == "train", "subject_id"]) & set(ms_cxr.subject_id)


def test_natural_index_and_model_fallbacks_name_their_keys(tmp_path):
    result = _run("index-natural", "--config", str(CONFIGS / "cub.yaml"),
                  "--set", "paths.natural_root=/nonexistent/cub", "--out", str(tmp_path / "o"))
    message = result.output + str(result.exception or "")
    assert result.exit_code != 0 and "paths.natural_root" in message and "/nonexistent/cub" in message
    result = _run("index-natural", "--root", str(tmp_path), "--out", str(tmp_path / "o"))
    message = result.output + str(result.exception or "")
    assert result.exit_code != 0 and "paths.natural_dataset" in message
    result = _run("localize", "--config", str(CONFIGS / "mscxr_eval.yaml"), "--set", "paths.model=/nonexistent/sd",
                  "--index", str(tmp_path), "--out", str(tmp_path / "h"))
    message = result.output + str(result.exception or "")
    assert result.exit_code != 0 and "paths.model" in message and "/nonexistent/sd" in message
    result = _run("finetune", "--set", "model.path=/nonexistent/m", "--out", str(tmp_path / "f"))
    message = result.output + str(result.exception or "")
    assert result.exit_code != 0 and "model.path" in message and "/nonexistent/m" in message
