"""D'_s: synthetic training images sampled with the foreground prompt y_f (supplement section 3).

The images are written with a `samples.csv` in the "Natural images" format (empty `mask_path`, split
`train`) and an `index.json`, so the same chain as for real images applies to them: `cxr-fgbg localize`
(heat maps, M_pre), `cxr-fgbg refine` (M), and their masks.csv joins the real one in `segment train`.
For chest X-ray findings, `finding_prompts` picks y_f per finding from the training phrases and
`write_findings_index` indexes the set like MS-CXR, so localisation reads the finding's vocabulary words.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from cxr_fgbg.masks.guidance import initial_latents, sample_guided, save_image_png
from cxr_fgbg.masks.settings import SyntheticSettings
from cxr_fgbg.seeding import derive_seed

__all__ = ["FINDING_COLUMNS", "SAMPLE_COLUMNS", "finding_prompts", "synthesize_dataset", "write_findings_index"]

SAMPLE_COLUMNS = ("sample_id", "image_path", "concept", "prompt", "mask_path", "boxes", "split", "width", "height")
FINDING_COLUMNS = ("sample_id", "dicom_id", "category_name", "label_text", "split", "image_path", "image_width",
                   "image_height", "boxes")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_") or "concept"


def synthesize_dataset(
    pipe,
    prompts: Sequence[tuple[str, str]],
    background_prompt: str,
    out_dir: str | os.PathLike[str],
    settings: SyntheticSettings | None = None,
    seed: int = 0,
    batch_size: int = 8,
    show_progress: bool = True,
) -> Path:
    """Sample `settings.images_per_prompt` images per (concept, prompt); returns OUT/samples.csv.

    Each image's noise comes from (seed, concept, k), so a resumed run redraws exactly the missing
    images and keeps those on disk. `background_prompt` is y_b of the guidance (unused at w = 1).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from cxr_fgbg.io import write_csv_atomic, write_json_atomic

    settings = settings or SyntheticSettings()
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    jobs, rows = [], []
    for concept, prompt in prompts:
        for k in range(settings.images_per_prompt):
            sample_id = f"synthetic_{_slug(concept)}_{k:05d}"
            rows.append({"sample_id": sample_id, "image_path": f"images/{sample_id}.png", "concept": concept,
                         "prompt": prompt, "mask_path": "", "boxes": "[]", "split": "train"})
            if not (out / "images" / f"{sample_id}.png").is_file():
                jobs.append((sample_id, prompt, derive_seed(seed, "synthetic", concept, k)))
    by_prompt: dict[str, list[tuple[str, int]]] = {}
    for sample_id, prompt, item_seed in jobs:
        by_prompt.setdefault(prompt, []).append((sample_id, item_seed))
    bar = tqdm(total=len(jobs), desc="synthetic images", disable=not show_progress)
    for prompt, items in by_prompt.items():
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            latents = torch.cat([initial_latents(pipe, 1, s) for _, s in chunk])
            images = sample_guided(pipe, prompt, background_prompt, settings.guidance,
                                   num_inference_steps=settings.num_inference_steps, latents=latents)
            for (sample_id, _), image in zip(chunk, images, strict=True):
                save_image_png(out / "images" / f"{sample_id}.png", image)
            bar.update(len(chunk))
    bar.close()
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    size = int(pipe.unet.config.sample_size) * factor
    for row in rows:
        row.update(width=size, height=size)
    path = out / "samples.csv"
    write_csv_atomic(path, pd.DataFrame(rows, columns=list(SAMPLE_COLUMNS)))
    write_json_atomic(out / "index.json", {"root": str(out.resolve()), "dataset": "synthetic",
                                            "guidance": settings.guidance, "background_prompt": background_prompt})
    return path


def finding_prompts(ms_cxr_csv: str | os.PathLike[str], splits: Sequence[str] = ("train",)) -> list[tuple[str, str]]:
    """y_f per finding: (category_name, its most frequent phrase in `splits`), ties broken alphabetically.

    Taken from the training split only, so the held-out samples never shape the synthetic set.
    """
    from cxr_fgbg.io import read_table

    frame = read_table(Path(ms_cxr_csv), ("category_name", "label_text", "split"))
    frame = frame[frame["split"].isin(list(splits)) & (frame["label_text"].str.strip() != "")]
    prompts = []
    for category, group in frame.groupby("category_name", sort=True):
        counts = group["label_text"].value_counts()
        best = sorted(counts[counts == counts.max()].index)[0]
        prompts.append((str(category), str(best)))
    return prompts


def write_findings_index(samples_csv: str | os.PathLike[str]) -> Path:
    """`ms_cxr.csv` beside a synthetic samples.csv (concept -> category_name, prompt -> label_text, no boxes).

    `cxr-fgbg localize` then reads each finding's vocabulary words (opacity, opacities, opacification for
    Lung Opacity) as for the real MS-CXR samples, not the concept's literal words, which a phrase such as
    "Extensive ill-defined opacity in the right middle lobe" need not contain ("lung"). Returns the path.
    """
    import pandas as pd

    from cxr_fgbg.io import read_table, write_csv_atomic

    samples = Path(samples_csv)
    frame = read_table(samples, ("sample_id", "image_path", "concept", "prompt", "split", "width", "height"))
    table = pd.DataFrame({
        "sample_id": frame["sample_id"], "dicom_id": frame["sample_id"], "category_name": frame["concept"],
        "label_text": frame["prompt"], "split": frame["split"], "image_path": frame["image_path"],
        "image_width": frame["width"], "image_height": frame["height"], "boxes": "[]",
    }, columns=list(FINDING_COLUMNS))
    path = samples.parent / "ms_cxr.csv"
    write_csv_atomic(path, table)
    return path
