"""Load a Stable-Diffusion-layout folder from local disk, after checking that its parts fit together.

Works for Stable Diffusion 1.x/2.x, RoentGen and our own bundles alike: they are all diffusers folders
(`model_index.json` + one sub-folder per component). The configs are read and cross-checked BEFORE any
weights are loaded, so a mismatched component is reported by name instead of surfacing as a shape error
deep inside a forward pass. Nothing is ever downloaded (`local_files_only=True`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxr_fgbg.errors import InputDataError

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionPipeline

__all__ = ["BUNDLE_FILE", "REQUIRED_COMPONENTS", "ModelFolderInfo", "inspect_model_folder", "load_pipeline"]

log = logging.getLogger(__name__)

BUNDLE_FILE = "cxr_fgbg_bundle.json"
REQUIRED_COMPONENTS = ("vae", "text_encoder", "tokenizer", "unet", "scheduler")
_MODEL_COMPONENTS = ("vae", "text_encoder", "unet")
_WEIGHTS = re.compile(
    r"^(diffusion_pytorch_model|model|pytorch_model)"
    r"(?P<shard>-\d+-of-\d+)?(\.(?P<variant>[A-Za-z0-9_]+))?\.(safetensors|bin)(\.index\.json)?$"
)


@dataclass(frozen=True)
class ModelFolderInfo:
    """What a model folder holds, read from its configs (no weights loaded)."""

    folder: Path
    pipeline_class: str
    image_channels: int
    latent_channels: int
    vae_scale_factor: int
    latent_size: int | None
    cross_attention_dim: int
    text_hidden_size: int
    text_vocab_size: int
    tokenizer_size: int | None
    tokenizer_max_length: int | None
    unet_in_channels: int
    inpainting: bool
    weights_variant: str | None
    bundle: dict[str, Any] = field(default_factory=dict)

    @property
    def image_size(self) -> int | None:
        """Native image size in pixels (U-Net sample size times the VAE factor)."""
        return None if self.latent_size is None else self.latent_size * self.vae_scale_factor

    @property
    def train_text_encoder_jointly(self) -> bool:
        """True when our bundle asks fine-tuning to keep training its text encoder (False for other folders)."""
        return bool(self.bundle.get("text_encoder", {}).get("train_jointly", False))

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "bundle"}
        out["folder"] = str(self.folder)
        out["image_size"] = self.image_size
        out["is_cxr_fgbg_bundle"] = bool(self.bundle)
        out["train_text_encoder_jointly"] = self.train_text_encoder_jointly
        return out


def inspect_model_folder(folder: str | os.PathLike[str]) -> ModelFolderInfo:
    """Check a local diffusers folder without loading weights; raise InputDataError naming the problem."""
    root = _local_folder(folder)
    index = _read_json(root / "model_index.json", root, "model_index.json")
    for name in REQUIRED_COMPONENTS:
        entry = index.get(name)
        if not entry or entry[0] is None:
            raise InputDataError(f"{root}: model_index.json names no '{name}' component (a Stable Diffusion "
                                 f"folder needs {', '.join(REQUIRED_COMPONENTS)})")
        if not (root / name).is_dir():
            raise InputDataError(f"{root}: component '{name}' is missing (no sub-folder {root / name})")

    variants = {name: _weights_variant(root / name, name) for name in _MODEL_COMPONENTS}
    used = {v for v in variants.values() if v is not None}
    if len(used) > 1 or (used and None in variants.values()):
        raise InputDataError(f"{root}: the components' weights come in different variants {variants}; "
                             "keep one variant for all of vae, text_encoder and unet")
    _tokenizer_files(root / "tokenizer")
    if not (root / "scheduler" / "scheduler_config.json").is_file():
        raise InputDataError(f"{root}: component 'scheduler' has no scheduler_config.json")

    unet = _read_json(root / "unet" / "config.json", root, "unet")
    vae = _read_json(root / "vae" / "config.json", root, "vae")
    text = _read_json(root / "text_encoder" / "config.json", root, "text_encoder")
    text = text.get("text_config", text) if "hidden_size" not in text else text

    cross = unet.get("cross_attention_dim")
    cross_values = set(cross) if isinstance(cross, list) else {cross}
    hidden = text.get("hidden_size")
    if cross_values != {hidden}:
        raise InputDataError(f"{root}: unet cross_attention_dim {cross} does not match the text_encoder "
                             f"hidden_size {hidden}: the two components do not belong together")
    latent = int(vae.get("latent_channels", 4))
    unet_in = int(unet.get("in_channels", 4))
    inpainting = unet_in == 2 * latent + 1
    if unet_in != latent and not inpainting:
        raise InputDataError(f"{root}: unet in_channels {unet_in} does not match the vae latent_channels "
                             f"{latent} (nor an inpainting U-Net's {2 * latent + 1})")
    unet_out = int(unet.get("out_channels", 4))
    if unet_out != latent:
        raise InputDataError(f"{root}: unet out_channels {unet_out} does not match the vae latent_channels {latent}")

    tok_size, tok_max = _tokenizer_size(root / "tokenizer")
    vocab = int(text.get("vocab_size", 0))
    if tok_size is not None and vocab and tok_size > vocab:
        raise InputDataError(f"{root}: the tokenizer has {tok_size} tokens but the text_encoder's vocab_size is "
                             f"{vocab}: they do not belong together")
    if inpainting:
        log.info("%s: 9-channel inpainting U-Net (in_channels %d); use it for inpainting, not text-to-image",
                    root, unet_in)
    bundle_file = root / BUNDLE_FILE
    bundle = _read_json(bundle_file, root, BUNDLE_FILE) if bundle_file.is_file() else {}
    sample = unet.get("sample_size")
    return ModelFolderInfo(
        folder=root,
        pipeline_class=str(index.get("_class_name", "")),
        image_channels=int(vae.get("in_channels", 3)),
        latent_channels=latent,
        vae_scale_factor=2 ** (len(vae.get("block_out_channels", [0])) - 1),
        latent_size=int(sample) if isinstance(sample, int) else None,
        cross_attention_dim=int(hidden),
        text_hidden_size=int(hidden),
        text_vocab_size=vocab,
        tokenizer_size=tok_size,
        tokenizer_max_length=tok_max,
        unet_in_channels=unet_in,
        inpainting=inpainting,
        weights_variant=next(iter(used), None),
        bundle=bundle,
    )


def load_pipeline(
    folder: str | os.PathLike[str], *, torch_dtype: torch.dtype | None = None, device: str | torch.device = "cpu"
) -> StableDiffusionPipeline:
    """Load a local SD-layout folder as a `StableDiffusionPipeline` (no safety checker, never a download).

    The folder is checked first (:func:`inspect_model_folder`); any problem is an InputDataError that
    names the component and the folder.
    """
    from diffusers import StableDiffusionPipeline

    info = inspect_model_folder(folder)
    kwargs: dict[str, Any] = {
        "local_files_only": True,
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }
    if torch_dtype is not None:
        kwargs["torch_dtype"] = torch_dtype
    if info.weights_variant is not None:
        kwargs["variant"] = info.weights_variant
    try:
        pipe = StableDiffusionPipeline.from_pretrained(str(info.folder), **kwargs)
    except InputDataError:
        raise
    except Exception as exc:  # diffusers/transformers raise many types; the user needs the folder named
        raise InputDataError(f"{info.folder}: could not load the pipeline ({type(exc).__name__}: {exc})") from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


# --------------------------------------------------------------------------- helpers
def _local_folder(folder: str | os.PathLike[str]) -> Path:
    root = Path(folder).expanduser()
    if root.is_dir():
        return root.resolve()
    if root.exists():
        raise InputDataError(f"{root}: expected a model FOLDER (diffusers layout), got a file")
    hint = ""
    if isinstance(folder, str) and re.fullmatch(r"[\w.-]+/[\w.-]+", folder) and not folder.startswith((".", "/")):
        hint = (" It looks like a model-hub id: cxr-fgbg never downloads models; download the folder yourself "
                "(e.g. `huggingface-cli download ID --local-dir DIR`) and pass DIR.")
    raise InputDataError(f"{root}: model folder not found.{hint}")


def _read_json(path: Path, root: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise InputDataError(f"{root}: component '{what}' has no {path.name} ({path} is missing)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputDataError(f"{path}: not readable JSON ({exc}); component '{what}' of {root}") from exc
    if not isinstance(data, dict):
        raise InputDataError(f"{path}: expected a JSON object; component '{what}' of {root}")
    return data


def _weights_variant(sub: Path, name: str) -> str | None:
    """None for plain weights files, e.g. 'fp16' when only variant files exist; error when none exist."""
    if not (sub / "config.json").is_file():
        raise InputDataError(f"{sub.parent}: component '{name}' has no config.json ({sub / 'config.json'} is missing)")
    variants = set()
    for path in sub.iterdir():
        match = _WEIGHTS.match(path.name)
        if match:
            variants.add(match.group("variant"))
    if not variants:
        raise InputDataError(f"{sub.parent}: component '{name}' has no weights file in {sub} "
                             "(expected e.g. diffusion_pytorch_model.safetensors or model.safetensors)")
    return None if None in variants else sorted(variants)[0]


def _tokenizer_files(sub: Path) -> None:
    if (sub / "tokenizer.json").is_file() or ((sub / "vocab.json").is_file() and (sub / "merges.txt").is_file()):
        return
    raise InputDataError(f"{sub.parent}: component 'tokenizer' has neither tokenizer.json nor vocab.json + "
                         f"merges.txt in {sub}")


def _tokenizer_size(sub: Path) -> tuple[int | None, int | None]:
    """(number of token ids, model_max_length) read from the tokenizer files, None where not stated."""
    size = None
    try:
        if (sub / "tokenizer.json").is_file():
            data = json.loads((sub / "tokenizer.json").read_text(encoding="utf-8"))
            ids = list(data.get("model", {}).get("vocab", {}).values())
            ids += [t["id"] for t in data.get("added_tokens", [])]
            size = max(ids) + 1 if ids else None
        elif (sub / "vocab.json").is_file():
            size = max(json.loads((sub / "vocab.json").read_text(encoding="utf-8")).values()) + 1
        config = sub / "tokenizer_config.json"
        max_len = json.loads(config.read_text(encoding="utf-8")).get("model_max_length") if config.is_file() else None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise InputDataError(f"{sub.parent}: component 'tokenizer' is not readable ({exc})") from exc
    max_len = int(max_len) if isinstance(max_len, int | float) and max_len < 1e9 else None
    return size, max_len
