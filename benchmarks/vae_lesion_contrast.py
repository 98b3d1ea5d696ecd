"""How much of each finding's contrast survives the model's VAE (encode, then decode), on the phantom.

A latent diffusion model can only attend to a finding it can see in the latent. This measures, for the
lateralised findings of the phantom's exact ground truth, the contrast between the lesion and the mirrored
region on the other side (the same anatomy without the lesion) in the model-size input and in its VAE
reconstruction, and prints their ratio per class (1.0: all of it kept), beside the reconstruction error
inside and outside the lesions.

    .venv/bin/python benchmarks/vae_lesion_contrast.py --model DEMO/model-init --phantom DEMO/phantom
    .venv/bin/python benchmarks/vae_lesion_contrast.py --model DIR --phantom DIR --split val --limit 60
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image


def lesion_contrasts(vae, image_path: Path, mask_path: Path, size: int) -> tuple[float, float, float, float] | None:
    """(input contrast, reconstruction contrast, error in lesion, error outside) at model size, or None when the
    lesion and its mirror image overlap so much that no reference region is left."""
    from cxr_fgbg.data.transforms import preprocess_file

    tensor, geometry = preprocess_file(image_path, size, (0.5, 99.5), 1, "crop")
    x = torch.as_tensor(np.asarray(tensor), dtype=torch.float32)[None]
    with torch.no_grad():
        latent = vae.encode(x * 2 - 1).latent_dist.mean
        reconstruction = (vae.decode(latent).sample.clamp(-1, 1) + 1) / 2
    truth = np.asarray(Image.open(mask_path)) > 0
    lesion = geometry.map_to_model(truth.astype(np.uint8), mode="nearest") > 0
    mirror = lesion[:, ::-1] & ~lesion
    if lesion.sum() < 4 or mirror.sum() < 4:
        return None
    image, rebuilt = x[0, 0].numpy(), reconstruction[0, 0].numpy()
    error = np.abs(image - rebuilt)
    return (float(image[lesion].mean() - image[mirror].mean()), float(rebuilt[lesion].mean() - rebuilt[mirror].mean()),
            float(error[lesion].mean()), float(error[~lesion].mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="A diffusers model folder (its vae/ is used).")
    parser.add_argument("--phantom", type=Path, required=True, help="Output folder of `cxr-fgbg phantom`.")
    parser.add_argument("--split", default="val", help="Split of ground_truth.csv to measure (default val).")
    parser.add_argument("--limit", type=int, default=80, help="At most this many findings.")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(args.model, subfolder="vae", local_files_only=True).eval()
    size = int(vae.config.sample_size)
    truth = pd.read_csv(args.phantom / "ground-truth" / "ground_truth.csv", dtype=str, keep_default_na=False)
    truth = truth[(truth["split"] == args.split) & truth["side"].isin(["left", "right"])].head(args.limit)
    images = {p.stem: p for p in (args.phantom / "mimic-cxr" / "files").rglob("*.dcm")}
    rows = []
    for row in truth.to_dict("records"):
        measured = lesion_contrasts(vae, images[row["dicom_id"]], args.phantom / "ground-truth" / row["mask_path"],
                                    size)
        if measured is not None:
            rows.append({"class": row["category_name"], **dict(zip(
                ("contrast_input", "contrast_reconstruction", "error_in_lesion", "error_outside"), measured,
                strict=True))})
    table = pd.DataFrame(rows)
    # contrast kept = the reconstruction's contrast in the direction of the input's (a bright lesion that turns
    # dark counts as negative), relative to the input's magnitude
    sign = np.sign(table["contrast_input"])
    table["input_magnitude"] = table["contrast_input"].abs()
    table["reconstruction_along_input"] = table["contrast_reconstruction"] * sign
    per_class = table.groupby("class")[["input_magnitude", "reconstruction_along_input", "error_in_lesion",
                                         "error_outside"]].mean()
    per_class["kept"] = per_class["reconstruction_along_input"] / per_class["input_magnitude"]
    print(f"{len(table)} lateralised findings of split {args.split!r}, model size {size}")
    print(per_class.round(3).to_string())
    kept = table["reconstruction_along_input"].mean() / table["input_magnitude"].mean()
    print(f"all: lesion contrast {table['input_magnitude'].mean():.3f} in the input, "
          f"{table['reconstruction_along_input'].mean():.3f} after the VAE (kept {kept:.2f}); reconstruction error "
          f"{table['error_in_lesion'].mean():.3f} in lesions vs {table['error_outside'].mean():.3f} outside")

if __name__ == "__main__":
    main()
