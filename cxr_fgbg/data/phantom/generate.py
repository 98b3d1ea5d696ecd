"""Generate the phantom: MIMIC-CXR tree + CSVs, the MS-CXR box table and exact ground-truth masks.

A cheap sequential plan fixes patients, ids, dates and splits; each study is then rendered from its
own seed (`derive_seed(seed, study_index)`, patients' anatomy from `derive_seed(seed, "subject", i)`),
so studies can be rendered in any order or in parallel and the output is byte-identical for a seed.
"""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxr_fgbg.data.phantom.anatomy import Exposure, Frame, PatientAnatomy, expose, render_frontal, render_lateral
from cxr_fgbg.data.phantom.dicom import DicomHeader, derived_uid, dicom_bytes
from cxr_fgbg.data.phantom.findings import (
    CARDIOMEGALY_CTR,
    CATEGORIES,
    RenderedFinding,
    category_slug,
    render_finding,
    sample_findings,
)
from cxr_fgbg.data.phantom.reports import CHEXPERT_COLUMNS, write_report
from cxr_fgbg.data.phantom.settings import PhantomSettings
from cxr_fgbg.io import write_bytes_atomic, write_text_atomic
from cxr_fgbg.seeding import derive_seed

MS_CXR_NAME = "MS_CXR_Local_Alignment_v1.1.0.csv"
MS_CXR_COLUMNS = ("dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h",
                  "image_width", "image_height", "split")
GROUND_TRUTH_COLUMNS = ("dicom_id", "category_name", "side", "size", "mask_path", "split", "in_ms_cxr")
METADATA_COLUMNS = (
    "dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows", "Columns",
    "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)
MS_CXR_SPLIT = {"train": "train", "validate": "val", "test": "test"}
FIELD_OF_VIEW_MM = (350.0, 430.0)


@dataclass(frozen=True)
class StudyPlan:
    index: int
    subject_index: int
    subject_id: int
    study_id: int
    split: str
    study_date: str
    study_time: str
    in_ms_cxr: bool = True  # whether the study's positive frontal images get MS-CXR box rows


@dataclass
class StudyResult:
    """Rows for every CSV contributed by one study (files are already written)."""

    split_rows: list[dict] = field(default_factory=list)
    metadata_rows: list[dict] = field(default_factory=list)
    chexpert_row: dict = field(default_factory=dict)
    ms_cxr_rows: list[dict] = field(default_factory=list)
    ground_truth_rows: list[dict] = field(default_factory=list)


@dataclass
class PhantomSummary:
    """What was generated, with a table that `cxr-fgbg phantom` and `cxr-fgbg demo` print."""

    out_dir: Path
    mimic_root: Path
    ms_cxr_csv: Path
    ground_truth_dir: Path
    n_subjects: int
    n_studies: int
    n_images: int
    n_frontal: int
    n_lateral: int
    n_normal_studies: int
    n_boxes: int
    counts: dict[str, dict[str, int]]  # category -> MS-CXR split -> number of (image, finding) samples
    seed: int = 0

    def format(self) -> str:
        splits = ("train", "val", "test")
        lines = [
            f"Phantom (seed {self.seed}) in {self.out_dir}",
            f"  patients {self.n_subjects}, studies {self.n_studies} ({self.n_normal_studies} normal), "
            f"images {self.n_images} ({self.n_frontal} frontal, {self.n_lateral} lateral), boxes {self.n_boxes}",
            f"  MIMIC-CXR tree: {self.mimic_root}",
            f"  MS-CXR boxes:   {self.ms_cxr_csv}",
            f"  ground truth:   {self.ground_truth_dir}",
            "",
            f"  {'finding':<18}" + "".join(f"{s:>7}" for s in splits) + f"{'total':>8}",
        ]
        for cat in CATEGORIES:
            row = self.counts.get(cat, {})
            lines.append(f"  {cat:<18}" + "".join(f"{row.get(s, 0):>7}" for s in splits)
                         + f"{sum(row.values()):>8}")
        totals = {s: sum(self.counts.get(c, {}).get(s, 0) for c in CATEGORIES) for s in splits}
        lines.append(f"  {'all':<18}" + "".join(f"{totals[s]:>7}" for s in splits) + f"{sum(totals.values()):>8}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def dicom_id_for(seed: int, study_index: int, image_index: int) -> str:
    """A MIMIC-style dicom id (five dash-separated groups of eight hex digits), derived from the seed."""
    digest = hashlib.sha1(f"cxr-fgbg/{seed}/{study_index}/{image_index}".encode()).hexdigest()
    return "-".join(digest[i:i + 8] for i in range(0, 40, 8))


def plan_studies(settings: PhantomSettings, seed: int) -> list[StudyPlan]:
    """Patients, ids, dates and patient-disjoint splits for `settings.studies` studies."""
    rng = np.random.default_rng(derive_seed(seed, "plan"))
    counts: list[int] = []
    while sum(counts) < settings.studies:
        counts.append(int(rng.integers(1, settings.max_studies_per_subject + 1)))
    counts[-1] -= sum(counts) - settings.studies
    n_subjects = len(counts)
    subject_ids = 10_000_000 + rng.choice(9_000_000, size=n_subjects, replace=False)
    study_ids = 50_000_000 + rng.choice(9_000_000, size=settings.studies, replace=False)
    order = rng.permutation(n_subjects)
    n_test = round(settings.test_fraction * n_subjects)
    n_val = round(settings.validate_fraction * n_subjects)
    if n_subjects >= 3:  # small phantoms still get every split
        n_test = max(n_test, 1 if settings.test_fraction > 0 else 0)
        n_val = max(n_val, 1 if settings.validate_fraction > 0 else 0)
    split_of = {}
    for rank, subject in enumerate(order):
        split_of[int(subject)] = "test" if rank < n_test else ("validate" if rank < n_test + n_val else "train")
    # Like the real MS-CXR, the box table covers only some patients: all validate/test patients and a
    # share of the training patients (its own 'train' split). The indexer holds all of them out of
    # fine-tuning, so the rest of the training patients are what the diffusion model learns from.
    in_ms_cxr = {subject: split_of[subject] != "train" or bool(rng.random() < settings.ms_cxr_train_fraction)
                 for subject in range(n_subjects)}
    plans = []
    index = 0
    for subject, count in enumerate(counts):
        year = int(rng.integers(2110, 2190))
        day = int(rng.integers(0, 200))
        for _ in range(count):
            day += int(rng.integers(1, 120))
            month, dom = 1 + (day // 28) % 12, 1 + day % 28
            date = f"{year + day // 336:04d}{month:02d}{dom:02d}"
            time = f"{int(rng.integers(0, 24)):02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}.000"
            plans.append(StudyPlan(index, subject, int(subject_ids[subject]), int(study_ids[index]),
                                   split_of[subject], date, time, in_ms_cxr[subject]))
            index += 1
    return plans


def study_folder(mimic_root: Path, subject_id: int, study_id: int) -> Path:
    subject = f"p{subject_id}"
    return mimic_root / "files" / subject[:3] / subject / f"s{study_id}"


def _image_shape(rng: np.random.Generator, size: int) -> tuple[int, int]:
    short = round(size * rng.uniform(0.8, 0.97))
    return (size, short) if rng.random() < 0.8 else (short, size)


def _boxes(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def _png_bytes(mask: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def render_study(plan: StudyPlan, settings: PhantomSettings, seed: int, out_dir: Path) -> StudyResult:
    """Render one study and write its DICOM files, report and ground-truth masks."""
    mimic_root = out_dir / "mimic-cxr"
    anatomy = PatientAnatomy.sample(np.random.default_rng(derive_seed(seed, "subject", plan.subject_index)))
    rng = np.random.default_rng(derive_seed(seed, plan.index))
    size = settings.size
    ap = bool(rng.random() < settings.ap_fraction)
    has_lateral = bool(rng.random() < (settings.lateral_fraction * (0.3 if ap else 1.3)))
    specs = sample_findings(rng, settings.normal_fraction)
    cardio = next((s for s in specs if s.category == "Cardiomegaly"), None)
    ctr = rng.uniform(*CARDIOMEGALY_CTR[cardio.size]) if cardio else None

    height, width = _image_shape(rng, size)
    frame = Frame.make(height, width, anatomy.habitus, rng, max_rotation_deg=5.0 if ap else 3.0)
    maps = render_frontal(anatomy, frame, rng, ctr=ctr, ap=ap)
    rendered: list[RenderedFinding] = []
    for spec in specs:
        done = render_finding(spec, maps, rng)
        if done is not None:
            rendered.append(done)
    specs = [r.spec for r in rendered]
    frontal = expose(maps.density + maps.markings, Exposure.sample(rng, ap), rng, max(height, width))
    images = [("AP" if ap else "PA", frontal)]
    if has_lateral:
        lh, lw = _image_shape(rng, size)
        lframe = Frame.make(lh, lw, anatomy.habitus, rng, max_rotation_deg=2.0)
        images.append(("LATERAL", expose(render_lateral(anatomy, lframe, rng), Exposure.sample(rng, False), rng,
                                         max(lh, lw))))
    report = write_report(specs, rng, view=images[0][0], has_lateral=has_lateral, age=anatomy.age,
                          female=anatomy.female)

    folder = study_folder(mimic_root, plan.subject_id, plan.study_id)
    write_text_atomic(folder.parent / f"s{plan.study_id}.txt", report.text)
    result = StudyResult()
    study_uid = derived_uid("study", seed, plan.index)
    for image_index, (view, pixels) in enumerate(images):
        dicom_id = dicom_id_for(seed, plan.index, image_index)
        fov = rng.uniform(*FIELD_OF_VIEW_MM)
        header = DicomHeader(
            patient_id=str(plan.subject_id), study_uid=study_uid,
            series_uid=derived_uid("series", seed, plan.index, image_index),
            sop_uid=derived_uid("image", seed, plan.index, image_index), view_position=view,
            pixel_spacing=round(fov / max(pixels.shape), 6), study_date=plan.study_date,
            study_time=plan.study_time, patient_sex="F" if anatomy.female else "M",
            monochrome1=bool(rng.random() < settings.monochrome1_fraction), study_id=str(plan.study_id),
            accession=f"{derive_seed(seed, 'accession', plan.index) % 10**8:08d}",
        )
        write_bytes_atomic(folder / f"{dicom_id}.dcm", dicom_bytes(pixels, header))
        result.split_rows.append({"dicom_id": dicom_id, "study_id": plan.study_id, "subject_id": plan.subject_id,
                                  "split": plan.split})
        result.metadata_rows.append({
            "dicom_id": dicom_id, "subject_id": plan.subject_id, "study_id": plan.study_id,
            "PerformedProcedureStepDescription": report.text.split("EXAMINATION:")[1].split("\n")[0].strip(),
            "ViewPosition": view, "Rows": pixels.shape[0], "Columns": pixels.shape[1],
            "StudyDate": plan.study_date, "StudyTime": plan.study_time,
            "ProcedureCodeSequence_CodeMeaning": "CHEST (PORTABLE AP)" if ap else "CHEST (PA AND LAT)",
            "ViewCodeSequence_CodeMeaning": {"PA": "postero-anterior", "AP": "antero-posterior",
                                             "LATERAL": "lateral"}[view],
            "PatientOrientationCodeSequence_CodeMeaning": "Recumbent" if ap else "Erect",
        })
        if image_index != 0:
            continue
        rel_path = folder.relative_to(mimic_root) / f"{dicom_id}.dcm"
        for finding in rendered:
            slug = category_slug(finding.spec.category)
            mask_name = f"{dicom_id}__{slug}.png"
            write_bytes_atomic(out_dir / "ground-truth" / mask_name, _png_bytes(finding.mask))
            ms_split = MS_CXR_SPLIT[plan.split]
            result.ground_truth_rows.append({
                "dicom_id": dicom_id, "category_name": finding.spec.category, "side": finding.spec.side,
                "size": finding.spec.size, "mask_path": mask_name, "split": ms_split,
                "in_ms_cxr": plan.in_ms_cxr,
            })
            if not plan.in_ms_cxr:
                continue
            for side in sorted(finding.masks, key=lambda s: _boxes(finding.masks[s])[0]):
                x, y, w, h = _boxes(finding.masks[side])
                result.ms_cxr_rows.append({
                    "dicom_id": dicom_id, "category_name": finding.spec.category,
                    "label_text": report.label_texts[finding.spec.category], "path": rel_path.as_posix(),
                    "x": x, "y": y, "w": w, "h": h, "image_width": pixels.shape[1],
                    "image_height": pixels.shape[0], "split": ms_split,
                })
    labels = {k: ("" if v is None else v) for k, v in report.chexpert.items()}
    result.chexpert_row = {"subject_id": plan.subject_id, "study_id": plan.study_id, **labels}
    return result


def _render_many(args: tuple[list[StudyPlan], PhantomSettings, int, Path]) -> list[StudyResult]:
    plans, settings, seed, out_dir = args
    return [render_study(plan, settings, seed, out_dir) for plan in plans]


def generate_phantom(out_dir: str | Path, studies: int, seed: int, size: int = 512, progress: bool = True,
                     settings: PhantomSettings | None = None) -> PhantomSummary:
    """Write the whole phantom under `out_dir` (see docs/phantom.md) and return its summary.

    `studies`, `seed` and `size` override the corresponding fields of `settings`. Rerunning with the
    same arguments rewrites identical files (atomically), so an interrupted run is simply rerun.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    base = settings or PhantomSettings()
    settings = base.model_copy(update={"studies": int(studies), "size": int(size), "seed": int(seed)})
    PhantomSettings.model_validate(settings.model_dump())  # range checks of the overridden values
    out = Path(out_dir)
    mimic_root = out / "mimic-cxr"
    plans = plan_studies(settings, seed)
    results: list[StudyResult] = []
    bar = tqdm(total=len(plans), desc="phantom studies", unit="study", disable=not progress)
    if settings.workers > 1:
        chunks = [plans[i:i + 8] for i in range(0, len(plans), 8)]
        with ProcessPoolExecutor(max_workers=settings.workers) as pool:
            for chunk_results in pool.map(_render_many, [(c, settings, seed, out) for c in chunks]):
                results.extend(chunk_results)
                bar.update(len(chunk_results))
    else:
        for plan in plans:
            results.append(render_study(plan, settings, seed, out))
            bar.update(1)
    bar.close()

    def frame(rows: list[dict], columns: tuple[str, ...]) -> pd.DataFrame:
        return pd.DataFrame(rows, columns=list(columns))

    split_rows = [r for res in results for r in res.split_rows]
    metadata_rows = [r for res in results for r in res.metadata_rows]
    ms_rows = [r for res in results for r in res.ms_cxr_rows]
    gt_rows = [r for res in results for r in res.ground_truth_rows]
    _write_csv(mimic_root / "mimic-cxr-2.0.0-split.csv",
               frame(split_rows, ("dicom_id", "study_id", "subject_id", "split")))
    _write_csv(mimic_root / "mimic-cxr-2.0.0-metadata.csv", frame(metadata_rows, METADATA_COLUMNS))
    _write_csv(mimic_root / "mimic-cxr-2.0.0-chexpert.csv",
               frame([res.chexpert_row for res in results], ("subject_id", "study_id", *CHEXPERT_COLUMNS)))
    ms_cxr_csv = out / "ms-cxr" / MS_CXR_NAME
    _write_csv(ms_cxr_csv, frame(ms_rows, MS_CXR_COLUMNS))
    _write_csv(out / "ground-truth" / "ground_truth.csv", frame(gt_rows, GROUND_TRUTH_COLUMNS))

    counts: dict[str, dict[str, int]] = {}
    for row in gt_rows:
        per = counts.setdefault(row["category_name"], {})
        per[row["split"]] = per.get(row["split"], 0) + 1
    views = [r["ViewPosition"] for r in metadata_rows]
    return PhantomSummary(
        out_dir=out, mimic_root=mimic_root, ms_cxr_csv=ms_cxr_csv, ground_truth_dir=out / "ground-truth",
        n_subjects=len({p.subject_id for p in plans}), n_studies=len(plans), n_images=len(metadata_rows),
        n_frontal=sum(v != "LATERAL" for v in views), n_lateral=sum(v == "LATERAL" for v in views),
        n_normal_studies=sum(1 for res in results if res.chexpert_row.get("No Finding") == 1.0),
        n_boxes=len(ms_rows), counts=counts, seed=seed,
    )


def _write_csv(path: Path, frame: object) -> None:
    text = frame.to_csv(index=False, lineterminator="\n")  # type: ignore[attr-defined]
    write_text_atomic(path, text)
