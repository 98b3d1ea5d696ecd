"""The segmentation network: MONAI's 2-D `UNet`, one output channel (logits)."""

from __future__ import annotations

from typing import Any

from cxr_fgbg.segmentation.settings import SegmentSettings

__all__ = ["build_network", "resolve_device"]


def build_network(in_channels: int, settings: SegmentSettings) -> Any:
    from monai.networks.nets import UNet

    if len(settings.strides) != len(settings.channels) - 1:
        from cxr_fgbg.errors import ConfigError

        raise ConfigError(
            f"segment.strides needs one entry fewer than segment.channels ({len(settings.channels) - 1}), "
            f"got {len(settings.strides)}"
        )
    return UNet(spatial_dims=2, in_channels=in_channels, out_channels=1, channels=tuple(settings.channels),
                strides=tuple(settings.strides), num_res_units=settings.num_res_units)


def resolve_device(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
