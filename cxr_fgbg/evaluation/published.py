"""Published MS-CXR localisation figures, kept apart from our results.

They were measured on real MS-CXR (macro over its eight classes) with the convention named in each row;
a phantom run is not comparable with them, and two CNR conventions are not comparable with each other.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PUBLISHED_LABEL", "PUBLISHED_MS_CXR", "published_table"]

PUBLISHED_LABEL = "real MS-CXR, not comparable with a phantom run"

PUBLISHED_MS_CXR: tuple[dict[str, Any], ...] = (
    {
        "method": "BioViL (Boecking et al., ECCV 2022)",
        "metric": "cnr_biovil", "value": 1.07,
        "convention": "per-box CNR, population variances, averaged over boxes; macro over 8 classes",
    },
    {
        "method": "BioViL (Boecking et al., ECCV 2022)",
        "metric": "miou", "value": 0.229,
        "convention": "mean IoU over thresholds 0.1-0.5 of the [0, 1]-scaled similarity map vs union of boxes",
    },
    {
        "method": "BioViL-T (Bannur et al., CVPR 2023)",
        "metric": "cnr_biovil", "value": 1.33,
        "convention": "same as BioViL",
    },
    {
        "method": "BioViL-T (Bannur et al., CVPR 2023)",
        "metric": "miou", "value": 0.240,
        "convention": "same as BioViL",
    },
    {
        "method": "Dombrowski et al., ICCV 2023 (attention map M-hat)",
        "metric": "pixel_auroc", "value": 0.796,
        "convention": "pixel AUROC of the min-max normalised map vs rasterised boxes, across the 8 classes",
    },
    {
        "method": "chest-distillation (SD fine-tune, frozen text encoder)",
        "metric": "cnr_fau", "value": 0.94,
        "convention": "union of boxes, signed, unbiased variances, maps at 512x512 (approximate figure)",
    },
)


def published_table() -> dict[str, Any]:
    """The table as stored in summary.json under `published`, with its label."""
    return {"label": PUBLISHED_LABEL, "rows": [dict(row) for row in PUBLISHED_MS_CXR]}
