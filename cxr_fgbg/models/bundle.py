"""Build the tiny phantom bundle from an index: tokenizer, pre-trained text encoder, VAE, random U-Net.

The result is an ordinary diffusers folder (`StableDiffusionPipeline.from_pretrained(folder)` loads it)
with one extra file, `cxr_fgbg_bundle.json`, holding the settings, the seed and what was measured
(tokenizer splits of the disease words, text pre-training loss, VAE reconstruction error). The folder is
assembled in a temporary sibling and renamed into place, so an interrupted build leaves nothing that
looks finished; a rerun with the same settings and seed finds the finished folder and keeps it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxr_fgbg.errors import ConfigError, InputDataError
from cxr_fgbg.models.loading import BUNDLE_FILE
from cxr_fgbg.models.settings import ModelSettings

if TYPE_CHECKING:
    import pandas as pd
    import torch

__all__ = ["BUNDLE_FORMAT_VERSION", "BundleReport", "build_bundle", "read_index"]

log = logging.getLogger(__name__)

BUNDLE_FORMAT_VERSION = 1
_STUDY_COLUMNS = ("dicom_id", "image_path", "split", "text")


@dataclass
class BundleReport:
    """What `build_bundle` made and measured (also stored in `cxr_fgbg_bundle.json`)."""

    out_dir: str
    seed: int
    train_texts: int
    train_images: int
    validation_images: int
    validation_source: str
    vocab_size: int
    disease_word_pieces: dict[str, list[str]]
    unsplit_disease_words: list[str]
    text_pretraining: dict[str, Any]
    vae: dict[str, Any]
    cross_attention_latent_sizes: list[int]
    parameters: dict[str, int]
    skipped_images: int
    seconds: float
    reused: bool = False
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def vae_mse(self) -> float:
        return float(self.vae["after"]["mse"])

    @property
    def vae_psnr(self) -> float:
        return float(self.vae["after"]["psnr"])

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_index(index: str | os.PathLike[str] | pd.DataFrame, image_root: str | os.PathLike[str] | None = None):
    """(studies frame, image root) from an index folder (`studies.csv` + `index.json`) or a DataFrame.

    With a DataFrame, `image_path` is resolved against `image_root` (or used as is when absolute).
    """
    import pandas as pd

    if isinstance(index, pd.DataFrame):
        frame = index.copy()
        root = Path(image_root) if image_root is not None else Path()
        source = "<DataFrame>"
    else:
        folder = Path(index)
        csv = folder / "studies.csv"
        if not csv.is_file():
            raise InputDataError(f"{folder}: not an index folder (no studies.csv); run `cxr-fgbg index` first")
        frame = pd.read_csv(csv, dtype={"dicom_id": str, "subject_id": str, "study_id": str}, keep_default_na=False)
        root = Path(image_root) if image_root is not None else _mimic_root(folder)
        source = str(csv)
    missing = [c for c in _STUDY_COLUMNS if c not in frame.columns]
    if missing:
        raise InputDataError(f"{source}: missing column(s) {', '.join(missing)} (see docs/architecture.md, 'Index')")
    frame["text"] = frame["text"].fillna("").astype(str)
    frame["split"] = frame["split"].astype(str)
    return frame, root


def build_bundle(
    index: str | os.PathLike[str] | pd.DataFrame,
    out_dir: str | os.PathLike[str],
    settings: ModelSettings | None = None,
    seed: int = 0,
    progress: bool = True,
    *,
    image_root: str | os.PathLike[str] | None = None,
    percentiles: tuple[float, float] | None = (0.5, 99.5),
    overwrite: bool = False,
) -> BundleReport:
    """Build and save the tiny bundle for the studies in `index` (an index folder or a studies DataFrame).

    Trains the tokenizer on the training impressions, pre-trains (then freezes) the text encoder, trains
    the VAE on the training images and measures it on held-out images; the U-Net is randomly initialised
    (fine-tuning trains it). Returns the report also written to `out_dir/cxr_fgbg_bundle.json`.
    """
    from cxr_fgbg.io import SkippedLog, write_json_atomic
    from cxr_fgbg.models.text_pretraining import pretrain_text_encoder
    from cxr_fgbg.models.tiny import build_tiny_pipeline
    from cxr_fgbg.models.tokenizer import DISEASE_WORDS, train_tokenizer, word_pieces
    from cxr_fgbg.models.vae_training import train_vae

    settings = settings or ModelSettings()
    out = Path(out_dir)
    settings_dump = settings.model_dump(mode="json")
    existing = _existing_bundle(out, settings_dump, seed, overwrite)
    if existing is not None:
        return existing
    started = time.monotonic()
    frame, root = read_index(index, image_root)
    train = frame[frame["split"] == "train"]
    if train.empty:
        raise InputDataError("the index has no rows with split == 'train': nothing to build the bundle from")

    # (a) tokenizer on the training impressions, one text per study
    per_study = train.drop_duplicates("study_id") if "study_id" in train.columns else train
    texts = [t for t in per_study["text"].tolist() if t.strip()]
    if not texts:
        raise InputDataError("the training rows have no conditioning text (column 'text' is empty)")
    tok = settings.tokenizer
    tokenizer = train_tokenizer(texts, tok.vocab_size, tok.max_length, tok.min_frequency, tok.max_token_length)
    corpus = " ".join(texts).lower()
    pieces = word_pieces(tokenizer, [w for w in DISEASE_WORDS if w in corpus])
    unsplit = [w for w, p in pieces.items() if len(p) < 2]
    if unsplit:  # short words ("edema") can stay whole under max_token_length; the report records it
        log.info("disease words kept whole by the tokenizer (vocab_size %d, max_token_length %s): %s",
                 tok.vocab_size, tok.max_token_length, ", ".join(unsplit))

    # (b, d) components from the seed; (b) text encoder pre-training
    tiny = settings.tiny
    pipe = build_tiny_pipeline(tokenizer, tiny, seed=seed)
    text_report = pretrain_text_encoder(pipe.text_encoder, tokenizer, texts, settings.text_pretraining, seed, progress)

    # (c) VAE on the training images, measured on held-out images
    skipped = SkippedLog(out.parent / f".{out.name}.skipped.csv", resume=False)
    train_x = _load_images(train, root, tiny, percentiles, skipped, progress, "train images")
    val_rows, val_source = _validation_rows(frame, settings.vae_training.max_validation_images)
    val_x = _load_images(val_rows, root, tiny, percentiles, skipped, progress, "validation images")
    if len(val_x) == 0:  # hold out the last tenth of the training images instead
        n_val = max(1, len(train_x) // 10)
        train_x, val_x, val_source = train_x[:-n_val], train_x[-n_val:], "train (held out)"
    if len(train_x) == 0:
        raise InputDataError("no training image could be read (see skipped.csv)")
    vae_report = train_vae(pipe.vae, train_x, val_x, settings.vae_training, seed, progress, val_source)
    pipe.unet.requires_grad_(False)

    report = BundleReport(
        out_dir=str(out),
        seed=seed,
        train_texts=len(texts),
        train_images=len(train_x),
        validation_images=len(val_x),
        validation_source=val_source,
        vocab_size=len(tokenizer),
        disease_word_pieces=pieces,
        unsplit_disease_words=unsplit,
        text_pretraining=text_report.as_dict(),
        vae=vae_report.as_dict(),
        cross_attention_latent_sizes=_cross_attention_sizes(tiny),
        parameters={name: sum(p.numel() for p in getattr(pipe, name).parameters())
                    for name in ("vae", "text_encoder", "unet")},
        skipped_images=len(skipped),
        seconds=round(time.monotonic() - started, 2),
        settings=settings_dump,
    )
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent if out.parent.exists()
                                else _mkdir(out.parent)))
    try:
        pipe.save_pretrained(tmp, safe_serialization=True)
        write_json_atomic(tmp / BUNDLE_FILE, _bundle_json(report, settings))
        skipped.path = tmp / "skipped.csv"
        skipped.write()
        _replace_folder(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("bundle written to %s in %.1f s (VAE validation PSNR %.1f dB)", out, report.seconds, report.vae_psnr)
    return report


# --------------------------------------------------------------------------- helpers
def _mimic_root(folder: Path) -> Path:
    info = folder / "index.json"
    if not info.is_file():
        raise InputDataError(f"{folder}: no index.json, so image_path cannot be resolved (pass image_root)")
    try:
        root = json.loads(info.read_text(encoding="utf-8"))["mimic_root"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputDataError(f"{info}: expected a JSON object with 'mimic_root' ({exc})") from exc
    return Path(root)


def _validation_rows(frame: pd.DataFrame, limit: int) -> tuple[pd.DataFrame, str]:
    for split in ("validate", "test"):
        rows = frame[frame["split"] == split]
        if not rows.empty:
            return rows.iloc[:limit], split
    return frame.iloc[:0], "none"


def _load_images(rows, root: Path, tiny, percentiles, skipped, progress: bool, desc: str) -> torch.Tensor:
    """Preprocess each row's image to (C, size, size) in [0, 1]; unreadable files go to skipped.csv."""
    import torch
    from tqdm.auto import tqdm

    from cxr_fgbg.data.transforms import preprocess_file

    images = []
    for path in tqdm(rows["image_path"].tolist(), desc=desc, disable=not progress, leave=False):
        full = Path(path) if Path(path).is_absolute() else root / path
        try:
            tensor, _ = preprocess_file(full, tiny.image_size, percentiles, channels=tiny.image_channels)
        except (InputDataError, ValueError, OSError) as exc:
            skipped.add(path, f"image not usable for VAE training: {exc}")
            continue
        images.append(tensor)
    if not images:
        return torch.zeros((0, tiny.image_channels, tiny.image_size, tiny.image_size))
    return torch.stack(images)


def _cross_attention_sizes(tiny) -> list[int]:
    """Latent resolutions at which the U-Net has cross-attention (down path; the up path mirrors it)."""
    factor = 2 ** (len(tiny.vae_block_out_channels) - 1)
    size = tiny.image_size // factor
    return [size // 2**i for i, cross in enumerate(tiny.unet_cross_attention_blocks) if cross]


def _bundle_json(report: BundleReport, settings: ModelSettings) -> dict[str, Any]:
    from cxr_fgbg import __version__

    body = report.as_dict()
    body.pop("reused", None)
    text = settings.text_pretraining
    return {
        "format": "cxr_fgbg_bundle",
        "format_version": BUNDLE_FORMAT_VERSION,
        "cxr_fgbg_version": __version__,
        "text_encoder": {
            "pretraining": text.mode,
            "train_jointly": text.train_jointly,
            "frozen": not text.train_jointly,
        },
        **body,
    }


def _existing_bundle(out: Path, settings_dump: dict, seed: int, overwrite: bool) -> BundleReport | None:
    """The report of a finished bundle with the same settings and seed (a rerun keeps it), else None."""
    if not out.exists():
        return None
    marker = out / BUNDLE_FILE
    if overwrite:
        return None
    if not marker.is_file():
        if out.is_dir() and not any(out.iterdir()):
            return None
        raise ConfigError(f"{out}: exists and is not a cxr-fgbg bundle; choose another output folder "
                          "(or --overwrite to replace it)")
    stored = json.loads(marker.read_text(encoding="utf-8"))
    if stored.get("seed") != seed or stored.get("settings") != settings_dump:
        raise ConfigError(f"{out}: holds a bundle built with other settings or seed; choose another output folder "
                          "(or --overwrite to rebuild it)")
    names = {f.name for f in BundleReport.__dataclass_fields__.values()}  # type: ignore[attr-defined]
    report = BundleReport(**{k: v for k, v in stored.items() if k in names})
    report.reused = True
    log.info("%s: bundle already built with these settings and seed; kept", out)
    return report


def _replace_folder(new: Path, out: Path) -> None:
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(new, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, out)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
