"""Training of the MONAI U-Net on (image, mask) pairs: seeded, checkpointed, resumable.

Every epoch draws its order and its crops from seeds derived from (seed, epoch), so a run resumed from
a checkpoint replays the remaining batches of the interrupted epoch exactly (the skipped batches'
crops are drawn and discarded to keep the random streams aligned).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxr_fgbg.errors import InputDataError
from cxr_fgbg.segmentation.settings import SegmentSettings

__all__ = ["TrainResult", "load_segmenter", "train_segmenter"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    model_path: Path
    steps: int
    final_loss: float
    num_images: int
    skipped: int


def _save(obj: dict[str, Any], path: Path) -> None:
    import torch

    from cxr_fgbg.io import atomic_path

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _latest_checkpoint(folder: Path) -> Path | None:
    found = sorted(folder.glob("step_*.pt"))
    return found[-1] if found else None


def load_segmenter(model_path: str | os.PathLike[str], device: str = "cpu"):
    """(network in eval mode, metadata dict) from `model.pt` or a checkpoint."""
    import torch

    from cxr_fgbg.segmentation.network import build_network, resolve_device

    path = Path(model_path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise InputDataError(f"{path}: segmentation model not found (run `cxr-fgbg segment train` first)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    settings = SegmentSettings.model_validate(state["settings"])
    network = build_network(int(state["in_channels"]), settings)
    network.load_state_dict(state["model"])
    network.to(resolve_device(device)).eval()
    return network, {"settings": settings, "in_channels": int(state["in_channels"]), "step": int(state["step"])}


def train_segmenter(
    masks_csv: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    settings: SegmentSettings | None = None,
    seed: int = 0,
    image_root: str | os.PathLike[str] | None = None,
    resume: bool = True,
    show_progress: bool = True,
) -> TrainResult:
    """Train on the rows of `masks_csv` (one or more tables, e.g. M plus D'_s) in `settings.train_splits`.

    Writes OUT/checkpoints/step_NNNNNN.pt every `checkpoint_every` steps, OUT/train_log.csv and
    OUT/model.pt; unreadable pairs go to OUT/skipped.csv. With `resume`, continues from the latest
    checkpoint (or returns at once when model.pt already holds `settings.steps` steps).
    """
    import pandas as pd
    import torch
    from tqdm.auto import tqdm

    from cxr_fgbg.io import SkippedLog, write_csv_atomic
    from cxr_fgbg.seeding import derive_seed, seed_everything, torch_generator
    from cxr_fgbg.segmentation.data import load_prepared, read_records, train_crop
    from cxr_fgbg.segmentation.network import build_network, resolve_device

    settings = settings or SegmentSettings()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    final = out / "model.pt"
    if resume and final.is_file():
        state = torch.load(final, map_location="cpu", weights_only=False)
        if int(state["step"]) >= settings.steps:
            log.info("segment train: %s already holds %d steps; nothing to do", final, state["step"])
            return TrainResult(final, int(state["step"]), float(state.get("loss", float("nan"))),
                               int(state.get("num_images", 0)), 0)
    seed_everything(derive_seed(seed, "segment"))
    resize = settings.resize or settings.crop_size
    skipped = SkippedLog(out / "skipped.csv")
    records = read_records(masks_csv, need_masks=True, splits=settings.train_splits, image_root=image_root)
    data: list[dict[str, Any]] = []
    channels = settings.in_channels
    for record in tqdm(records, desc="loading images", disable=not show_progress, leave=False):
        try:
            item = load_prepared(record, resize, channels, settings.intensity_percentiles)
        except InputDataError as exc:
            skipped.add(record.image, str(exc), sample_id=record.sample_id)
            continue
        if channels is None:
            channels = int(item["image"].shape[0])
        elif item["image"].shape[0] != channels:
            item["image"] = np.repeat(item["image"], channels, 0) if item["image"].shape[0] == 1 \
                else item["image"].mean(0, keepdims=True)
        data.append(item)
    skipped.write()
    if not data:
        raise InputDataError(
            f"{masks_csv}: no usable (image, mask) pair in splits {settings.train_splits} "
            f"({len(records)} row(s) read, {len(skipped)} skipped: see {skipped.path})"
        )
    device = resolve_device(settings.device)
    network = build_network(int(channels), settings).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=settings.learning_rate)
    if settings.loss == "dicece":
        from monai.losses import DiceCELoss

        loss_fn = DiceCELoss(sigmoid=True)
    else:
        loss_fn = torch.nn.BCEWithLogitsLoss()
    step, history = 0, []
    checkpoints = out / "checkpoints"
    latest = _latest_checkpoint(checkpoints) if resume else None
    if latest is not None:
        state = torch.load(latest, map_location="cpu", weights_only=False)
        network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
        history = [h for h in state.get("history", []) if h["step"] <= step]
        log.info("segment train: resuming from %s (step %d)", latest, step)
    per_epoch = -(-len(data) // settings.batch_size)
    crop = train_crop(settings.crop_size, settings.crop_sampling, settings.foreground_fraction)

    def snapshot(current: int, loss: float) -> dict[str, Any]:
        return {"model": network.state_dict(), "optimizer": optimizer.state_dict(), "step": current,
                "settings": settings.model_dump(mode="json"), "in_channels": int(channels), "seed": seed,
                "loss": loss, "history": history, "num_images": len(data)}

    network.train()
    running: list[float] = []
    last_loss = float("nan")
    bar = tqdm(total=settings.steps, initial=step, desc="U-Net training", disable=not show_progress)
    while step < settings.steps:
        epoch, offset = divmod(step, per_epoch)
        order = torch.randperm(len(data), generator=torch_generator(seed, "segment-epoch", epoch)).tolist()
        crop.set_random_state(seed=derive_seed(seed, "segment-crop", epoch) % (2**32))
        for b in range(per_epoch):
            idx = order[b * settings.batch_size:(b + 1) * settings.batch_size]
            items = [crop(data[i]) for i in idx]
            if b < offset:
                continue  # replayed for the random streams only
            images = torch.stack([torch.as_tensor(np.asarray(it["image"])) for it in items]).float().to(device)
            labels = torch.stack([torch.as_tensor(np.asarray(it["label"])) for it in items]).float().to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(network(images), labels)
            loss.backward()
            optimizer.step()
            step += 1
            last_loss = float(loss.detach().cpu())
            running.append(last_loss)
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.4f}")
            if step % settings.log_every == 0 or step == settings.steps:
                history.append({"step": step, "loss": float(np.mean(running))})
                running.clear()
            if step % settings.checkpoint_every == 0 and step < settings.steps:
                _save(snapshot(step, last_loss), checkpoints / f"step_{step:06d}.pt")
            if step >= settings.steps:
                break
    bar.close()
    _save(snapshot(step, last_loss), final)
    write_csv_atomic(out / "train_log.csv", pd.DataFrame(history, columns=["step", "loss"]))
    return TrainResult(final, step, last_loss, len(data), len(skipped))
