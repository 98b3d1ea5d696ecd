"""The whole chain on the embedded phantom, as one resumable job (`cxr-fgbg demo`, `make demo`).

phantom -> index -> tiny model bundle -> fine-tuning on impressions -> localisation (M-hat, M_pre)
-> evaluation against the MS-CXR-style boxes (validation and test splits, beside the priors)
-> per-token analysis -> conditioning diagnostic -> masks (M_pre, M_crop, M) and U-Nets scored against
the exact ground truth -> DIR/report.md (+ report.html).

Each stage writes into its own sub-folder and, when it finishes, a record in `stages.json`; a rerun
skips finished stages, so an interrupted demo resumes where it stopped. Presets (quick / full) sit
under whatever the user's config or `--set` states explicitly.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cxr_fgbg.config import PipelineConfig, deep_merge, dump_config
from cxr_fgbg.io import write_json_atomic, write_text_atomic

logger = logging.getLogger(__name__)

_COMMON: dict[str, Any] = {
    "threads": 1,  # the tiny models are faster on one thread than on two (measured on 2 cores)
    "finetune": {
        "objective": "impression", "per_device_batch_size": 16, "learning_rate": 5e-4,
        "lr_scheduler": "constant_with_warmup", "lr_warmup_steps": 50, "latent_cache": True, "log_every": 10,
    },
    # lr 3e-3: chosen on the validation split (docs/segmentation.md); at 400 steps lr 1e-3 left the U-Net under-trained
    "segment": {"resize": 64, "crop_size": 48, "batch_size": 16, "channels": [16, 32, 64, 128], "strides": [2, 2, 2],
                "learning_rate": 3e-3},
    "localize": {"overlays": 6},
}
QUICK_PRESET: dict[str, Any] = {
    "phantom": {"studies": 80, "size": 256},
    "model": {"vae_training": {"steps": 80}, "text_pretraining": {"steps": 80}},
    "finetune": {"steps": 150, "checkpoint_every": 75, "lr_warmup_steps": 20},
    "localize": {"preset": "fast"},
    "masks": {"refine": {"num_inference_steps": 10}, "synthetic": {"images_per_prompt": 1, "num_inference_steps": 10}},
    "segment": {"steps": 60, "checkpoint_every": 60, "log_every": 10},
    "evaluate": {"bootstrap_samples": 200},
}
FULL_PRESET: dict[str, Any] = {
    "phantom": {"studies": 400, "size": 512},
    "finetune": {"steps": 1500, "checkpoint_every": 250},
    "localize": {"preset": "paper"},
    "masks": {"refine": {"num_inference_steps": 50}, "synthetic": {"images_per_prompt": 4}},
    "segment": {"steps": 400, "checkpoint_every": 200, "log_every": 20},
}
NORMAL_IMPRESSION = "No acute cardiopulmonary process."


@dataclass
class StageRecord:
    name: str
    seconds: float
    outputs: dict[str, str] = field(default_factory=dict)
    summary: str = ""


class StageRunner:
    """Runs named stages once; finished stages are recorded in `stages.json` and skipped on rerun."""

    def __init__(self, out_dir: Path, echo: Callable[[str], None] = print) -> None:
        self.out_dir = out_dir
        self.echo = echo
        self.marker = out_dir / "stages.json"
        self.records: dict[str, StageRecord] = {}
        if self.marker.exists():
            for name, raw in json.loads(self.marker.read_text()).items():
                self.records[name] = StageRecord(**raw)

    def run(self, name: str, func: Callable[[], tuple[dict[str, str], str]]) -> StageRecord:
        if name in self.records:
            self.echo(f"[{name}] done before, skipped ({self.records[name].seconds:.1f} s then)")
            return self.records[name]
        self.echo(f"[{name}] running ...")
        start = time.perf_counter()
        outputs, summary = func()
        record = StageRecord(name, round(time.perf_counter() - start, 2), outputs, summary)
        self.records[name] = record
        write_json_atomic(self.marker, {key: asdict(value) for key, value in self.records.items()})
        self.echo(f"[{name}] finished in {record.seconds:.1f} s")
        return record


def demo_config(config: PipelineConfig, quick: bool) -> PipelineConfig:
    """The preset (quick or full) underneath anything the user set explicitly (file or --set)."""
    preset = deep_merge(_COMMON, QUICK_PRESET if quick else FULL_PRESET)
    return PipelineConfig.model_validate(deep_merge(preset, config.model_dump(exclude_unset=True)))


@dataclass
class DemoPaths:
    out: Path

    def __getattr__(self, name: str) -> Path:
        folders = {
            "phantom": "phantom", "index": "index", "model_init": "model-init", "finetune": "finetune",
            "heatmaps": "heatmaps", "evaluation_val": "evaluation-val", "evaluation_test": "evaluation-test",
            "analysis": "analysis", "conditioning": "conditioning", "masks": "masks", "segmentation": "segmentation",
        }
        if name not in folders:
            raise AttributeError(name)
        return self.out / folders[name]

    @property
    def model(self) -> Path:
        return self.finetune / "model"


def run_demo(out_dir: str | Path, config: PipelineConfig, quick: bool = False,
             echo: Callable[[str], None] = print) -> dict[str, StageRecord]:
    """Run every stage of the chain on the phantom into `out_dir`; returns the stage records."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = demo_config(config, quick)
    if config.threads is not None:
        import torch

        torch.set_num_threads(config.threads)
    write_text_atomic(out / "config.yaml", dump_config(config))
    paths = DemoPaths(out)
    runner = StageRunner(out, echo)
    seed = config.seed
    stages: list[tuple[str, Callable[[], tuple[dict[str, str], str]]]] = [
        ("phantom", lambda: _phantom(paths, config)),
        ("index", lambda: _index(paths, config)),
        ("model", lambda: _model(paths, config, seed)),
        ("finetune", lambda: _finetune(paths, config, seed)),
        ("localize", lambda: _localize(paths, config)),
        ("evaluate", lambda: _evaluate(paths, config, seed)),
        ("analysis", lambda: _analysis(paths, config, quick)),
        ("conditioning", lambda: _conditioning(paths, config, quick)),
        ("segmentation", lambda: _segmentation(paths, config, seed)),
    ]
    for name, func in stages:
        runner.run(name, func)
    report = _write_report(paths, runner.records, config, quick)
    echo(_final_summary(paths, runner.records, report))
    return runner.records


# ----------------------------------------------------------------------------------------- stages
def _phantom(paths: DemoPaths, config: PipelineConfig) -> tuple[dict[str, str], str]:
    from cxr_fgbg.data.phantom import generate_phantom

    summary = generate_phantom(
        paths.phantom, studies=config.phantom.studies,
        seed=config.phantom.seed if config.phantom.seed is not None else config.seed,
        size=config.phantom.size, settings=config.phantom,
    )
    return {"phantom": str(paths.phantom)}, summary.format()


def _index(paths: DemoPaths, config: PipelineConfig) -> tuple[dict[str, str], str]:
    from cxr_fgbg.data.mimic import build_index

    settings = config.data.index
    summary = build_index(
        paths.phantom / "mimic-cxr", paths.index,
        ms_cxr_csv=paths.phantom / "ms-cxr" / "MS_CXR_Local_Alignment_v1.1.0.csv",
        views=tuple(settings.views), keep_ms_cxr_patients=settings.keep_ms_cxr_patients,
        workers=settings.workers,
    )
    return {"index": str(paths.index)}, summary.format()


def _model(paths: DemoPaths, config: PipelineConfig, seed: int) -> tuple[dict[str, str], str]:
    from cxr_fgbg.models.bundle import build_bundle

    report = build_bundle(paths.index, paths.model_init, config.model, seed=seed)
    return {"model": str(paths.model_init)}, (
        f"{report.train_images} training images, {report.train_texts} impressions; VAE validation MSE "
        f"{report.vae_mse:.4f} (PSNR {report.vae_psnr:.1f} dB); disease words split into sub-words: "
        + ", ".join(f"{w}={'+'.join(p)}" for w, p in report.disease_word_pieces.items())
    )


def _finetune(paths: DemoPaths, config: PipelineConfig, seed: int) -> tuple[dict[str, str], str]:
    from cxr_fgbg.io import SkippedLog
    from cxr_fgbg.training.loop import finetune, load_model_folder
    from cxr_fgbg.training.sources import impression_dataset

    settings = config.finetune
    pipeline = load_model_folder(paths.model_init)
    size = settings.resolution or int(pipeline.vae.config.sample_size)
    skipped = SkippedLog(paths.finetune / "skipped.csv")
    dataset = impression_dataset(
        paths.index, pipeline.tokenizer, size, int(pipeline.vae.config.in_channels),
        config.data.preprocess.intensity_percentiles, config.data.preprocess.cache_dir, skipped=skipped,
    )
    del pipeline
    skipped.write()
    resume = any(paths.finetune.glob("checkpoints/checkpoint-*"))
    result = finetune(settings, paths.model_init, paths.finetune, dataset, seed=seed, resume=resume,
                      config_text=dump_config(config))
    return {"model": str(result.model_dir), "loss": str(result.loss_csv)}, (
        f"{settings.steps} steps on {len(dataset)} training images; loss log {result.loss_csv}"
    )


def _localize(paths: DemoPaths, config: PipelineConfig) -> tuple[dict[str, str], str]:
    from cxr_fgbg.attention.batch import localize_index
    from cxr_fgbg.attention.localizer import Localizer

    summary = localize_index(Localizer(paths.model, config), paths.index, paths.heatmaps)
    return {"heatmaps": str(paths.heatmaps / "heatmaps.csv")}, (
        f"{summary.computed} heat maps written, {summary.kept} kept, {summary.skipped} skipped, "
        f"{summary.empty_masks} empty preliminary masks"
    )


def _evaluate(paths: DemoPaths, config: PipelineConfig, seed: int) -> tuple[dict[str, str], str]:
    from cxr_fgbg.evaluation.run import evaluate_heatmaps

    lines = []
    for split, folder in (("val", paths.evaluation_val), ("test", paths.evaluation_test)):
        settings = config.evaluate.model_copy(update={"eval_splits": [split]})
        evaluate_heatmaps(paths.heatmaps, folder, settings, seed, prior_index=paths.index,
                          image_root=paths.phantom / "mimic-cxr")
        macro = json.loads((folder / "summary.json").read_text()).get("macro", {})
        values = {k: _mean_of(v) for k, v in macro.items()}
        lines.append(f"{split}: " + ", ".join(
            f"{k} {v:.0f}" if k.startswith("n") else f"{k} {v:.3f}" for k, v in values.items() if v == v
        ))
    return {"val": str(paths.evaluation_val), "test": str(paths.evaluation_test)}, "\n".join(lines)


def _analysis(paths: DemoPaths, config: PipelineConfig, quick: bool) -> tuple[dict[str, str], str]:
    from cxr_fgbg.attention.analysis_outputs import run_token_analysis
    from cxr_fgbg.attention.localizer import Localizer

    localizer = Localizer(paths.model, config)
    _, summary, png = run_token_analysis(localizer, paths.index, paths.analysis, config.localize.prompt,
                                         limit=12 if quick else 40)
    return {"token_auroc": str(png)}, summary.to_string(index=False)


def _conditioning(paths: DemoPaths, config: PipelineConfig, quick: bool) -> tuple[dict[str, str], str]:
    """Does the model bind the report to the finding, whatever M-hat shows? (validation split; a diagnostic)"""
    from cxr_fgbg.attention.analysis_outputs import run_conditioning_analysis
    from cxr_fgbg.attention.localizer import Localizer

    localizer = Localizer(paths.model, config)
    _, summary, png = run_conditioning_analysis(localizer, paths.index, paths.conditioning, config.localize.prompt,
                                                limit=12 if quick else 80, splits=["val"])
    return {"conditioning": str(png)}, summary.to_string(index=False, float_format=lambda v: f"{v:.3f}")


def _segmentation(paths: DemoPaths, config: PipelineConfig, seed: int) -> tuple[dict[str, str], str]:
    """The paper's Table 2 on the phantom: masks and U-Nets against the exact lesion masks (test split).

    Rows: M_pre, M_crop, M, U-Net(M_pre), U-Net(M) and U-Net(M + D'_s), the last trained on M plus the
    masks of a small synthetic set D'_s (`masks.synthetic`) made by the same mask pipeline.
    """
    from cxr_fgbg.masks.inpaint import load_pipeline
    from cxr_fgbg.masks.refine import run_refine

    mimic_root = paths.phantom / "mimic-cxr"
    heatmaps_csv = paths.heatmaps / "heatmaps.csv"
    refine = config.masks.refine.model_copy(update={"background_prompt": NORMAL_IMPRESSION})
    pipe = load_pipeline(paths.model, "cpu")
    rows: list[dict[str, Any]] = []
    mask_tables: dict[str, Path] = {}
    for method, label in (("pre", "M_pre"), ("crop", "M_crop"), ("inpaint", "M")):
        folder = paths.masks / label
        run = run_refine(heatmaps_csv, folder, pipe=pipe if method == "inpaint" else None,
                         settings=refine.model_copy(update={"method": method}), seed=seed,
                         majority_filter=config.masks.majority_filter,
                         percentiles=config.data.preprocess.intensity_percentiles, image_root=mimic_root)
        mask_tables[label] = Path(run.masks_csv)
        rows.append(_score_masks(paths, label, Path(run.masks_csv).parent, config, seed))
    synthetic_table, synthetic_note = _synthetic_masks(paths, config, seed, pipe)
    unets: list[tuple[str, list[Path]]] = [("M_pre", [mask_tables["M_pre"]]), ("M", [mask_tables["M"]])]
    if synthetic_table is not None:
        unets.append(("M + D'_s", [mask_tables["M"], synthetic_table]))
    for label, tables in unets:
        rows.append(_unet_row(paths, config, seed, label, tables))
    if synthetic_table is None:
        rows.append({"masks": "U-Net(M + D'_s)", "note": synthetic_note})
    import pandas as pd

    from cxr_fgbg.io import write_csv_atomic

    table = pd.DataFrame(rows)
    write_csv_atomic(paths.segmentation / "ablation.csv", table)
    return {"ablation": str(paths.segmentation / "ablation.csv")}, table.to_string(index=False) + "\n" + synthetic_note


def _unet_row(paths: DemoPaths, config: PipelineConfig, seed: int, label: str, tables: list[Path]) -> dict[str, Any]:
    """Train U-Net(label) on the train-split rows of `tables`, predict the test split, score it."""
    from cxr_fgbg.errors import CxrFgbgError
    from cxr_fgbg.segmentation.predict import run_predict
    from cxr_fgbg.segmentation.train import train_segmenter

    mimic_root = paths.phantom / "mimic-cxr"
    model_dir = paths.segmentation / f"unet-{_slug(label)}"
    try:
        trained = train_segmenter(tables, model_dir, config.segment, seed=seed, image_root=mimic_root)
        predicted = run_predict(trained.model_path, paths.heatmaps / "heatmaps.csv", model_dir / "predictions",
                                splits=["test"], image_root=mimic_root)
    except CxrFgbgError as exc:  # e.g. no usable training mask: report it, keep the demo going
        return {"masks": f"U-Net({label})", "note": str(exc)}
    return _score_masks(paths, f"U-Net({label})", Path(predicted.masks_csv).parent, config, seed)


def _synthetic_masks(paths: DemoPaths, config: PipelineConfig, seed: int, pipe: Any) -> tuple[Path | None, str]:
    """D'_s through the same mask pipeline as the real images: (its masks.csv or None, a one-line summary).

    Images sampled from the fine-tuned model with y_f = each finding's most frequent training phrase
    (`masks.synthetic`: images per finding, DDIM steps, guidance), M_pre by cross-attention with the
    localisation settings, M by inpainting with the normal impression as y_b.
    """
    from cxr_fgbg.attention.batch import localize_index
    from cxr_fgbg.attention.localizer import Localizer
    from cxr_fgbg.errors import CxrFgbgError
    from cxr_fgbg.masks.refine import run_refine
    from cxr_fgbg.masks.synthetic import finding_prompts, synthesize_dataset, write_findings_index

    folder = paths.masks / "D_s"
    start = time.perf_counter()
    try:
        prompts = finding_prompts(paths.index / "ms_cxr.csv", ["train"])
        samples = synthesize_dataset(pipe, prompts, NORMAL_IMPRESSION, folder, config.masks.synthetic, seed=seed,
                                     show_progress=False)
        write_findings_index(samples)
        localizer = Localizer(paths.model, config.localize.model_copy(update={"overlays": 0}), seed=seed)
        localize_index(localizer, folder, folder / "heatmaps", prompt_source="phrase", progress=False)
        run = run_refine(folder / "heatmaps" / "heatmaps.csv", folder / "M", pipe=pipe,
                         settings=config.masks.refine.model_copy(
                             update={"method": "inpaint", "background_prompt": NORMAL_IMPRESSION}),
                         seed=seed, majority_filter=config.masks.majority_filter,
                         percentiles=config.data.preprocess.intensity_percentiles, image_root=folder,
                         show_progress=False)
    except CxrFgbgError as exc:  # no synthetic masks: the table says why, the other rows stand
        return None, f"D'_s: not built ({exc})"
    n_images = len(prompts) * config.masks.synthetic.images_per_prompt
    n_masks = run.written + run.kept
    return Path(run.masks_csv), (
        f"D'_s: {n_images} synthetic images ({config.masks.synthetic.images_per_prompt} per finding, "
        f"{config.masks.synthetic.num_inference_steps} DDIM steps) -> {n_masks} masks M in "
        f"{time.perf_counter() - start:.0f} s"
    )


def _slug(label: str) -> str:
    """A folder name for a table label: "U-Net(M + D'_s)" -> "U-Net_M_+_D__s"."""
    import re

    return re.sub(r"[^\w+-]+", "_", label).strip("_")


def _score_masks(paths: DemoPaths, label: str, masks_dir: Path, config: PipelineConfig, seed: int) -> dict[str, Any]:
    from cxr_fgbg.errors import CxrFgbgError
    from cxr_fgbg.evaluation.run_masks import evaluate_masks

    settings = config.evaluate.model_copy(update={"eval_splits": ["test"], "figures": False})
    out = paths.segmentation / "scores" / _slug(label)
    try:
        evaluate_masks(masks_dir, paths.phantom / "ground-truth", out, settings, seed, index_dir=paths.index,
                       progress=False)
    except CxrFgbgError as exc:  # no mask of this kind could be scored: say so in the table
        return {"masks": label, "note": str(exc)}
    pooled = json.loads((out / "summary.json").read_text()).get("pooled", {}).get("all", {})
    return {"masks": label, **pooled}


# ----------------------------------------------------------------------------------------- report
def _mean_of(value: Any) -> float:
    if isinstance(value, dict):
        value = value.get("mean")
    return float(value) if isinstance(value, int | float) else float("nan")


def _write_report(paths: DemoPaths, records: dict[str, StageRecord], config: PipelineConfig, quick: bool) -> Path:
    lines = [
        "# cxr-fgbg demo on the phantom",
        "",
        f"Mode: {'quick' if quick else 'full'}; seed {config.seed}. Everything below was measured in this run; "
        "the phantom is synthetic, so none of it is comparable with published MS-CXR figures.",
        "",
        "## Stages",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {name} | {record.seconds:.1f} |" for name, record in records.items()],
        f"| **total** | {sum(r.seconds for r in records.values()):.1f} |",
        "",
    ]
    for split, folder in (("test", paths.evaluation_test), ("validation", paths.evaluation_val)):
        report = folder / "report.md"
        if report.exists():
            body = report.read_text(encoding="utf-8").replace("](figures/", f"]({folder.name}/figures/")
            lines += [f"## Localisation, {split} split", "", _demote_headings(body), ""]
    token_png = paths.analysis / "token_auroc.png"
    if token_png.exists():
        lines += ["## Per-token AUROC (supplement Fig. 3)", "",
                  f"![per-token AUROC]({paths.analysis.name}/token_auroc.png)", "",
                  "```", records["analysis"].summary if "analysis" in records else "", "```", ""]
    if "conditioning" in records:
        lines += ["## Does the model bind the report to the finding? (validation split, a diagnostic)", "",
                  "M-hat of the finding's words beside the map of where the prompt changes the denoiser's prediction "
                  "(|eps(y) - eps(empty prompt)|, same timesteps and noise; `cxr-fgbg analyze conditioning`). A "
                  "conditioning map that follows the finding while M-hat does not means the model has bound the report "
                  "to the lesion through tokens other than the finding's words.", "",
                  f"![conditioning vs attention]({paths.conditioning.name}/conditioning_vs_attention.png)", "",
                  "```", records["conditioning"].summary, "```", ""]
    if "segmentation" in records:
        lines += ["## Segmentation ablation (paper Table 2) against the exact lesion masks, test split", "",
                  "```", records["segmentation"].summary, "```", ""]
    text = "\n".join(lines)
    write_text_atomic(paths.out / "report.md", text)
    write_text_atomic(paths.out / "report.html", _markdown_to_html(text))
    return paths.out / "report.md"


def _demote_headings(markdown: str) -> str:
    return "\n".join("##" + line if line.startswith("#") else line for line in markdown.splitlines())


def _markdown_to_html(markdown: str) -> str:
    from cxr_fgbg.evaluation.report import markdown_to_html

    return markdown_to_html(markdown, title="cxr-fgbg demo")


def _final_summary(paths: DemoPaths, records: dict[str, StageRecord], report: Path) -> str:
    total = sum(r.seconds for r in records.values())
    lines = ["", "stage          seconds", *[f"{name:<14} {r.seconds:>7.1f}" for name, r in records.items()],
             f"{'total':<14} {total:>7.1f}", ""]
    if "evaluate" in records:
        lines += ["localisation (macro over classes):", records["evaluate"].summary, ""]
    lines.append(f"report: {report}")
    return "\n".join(lines)
