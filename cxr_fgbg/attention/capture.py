"""Reading the cross-attention probabilities out of a diffusers U-Net while it runs.

`capture_cross_attention(unet)` installs a `CaptureProcessor` on the selected cross-attention layers
(`...attn2`), leaves every other layer's processor alone, and restores the originals on exit, also
when an exception escapes. The processor computes exactly what diffusers' default processor does (the
probabilities are made explicit, since `AttnProcessor2_0` never materialises them) and adds the
head-averaged probabilities to float32 running sums in an `AttentionStore`, so memory does not grow
with the number of timesteps. Each layer's grid is derived from the latent the U-Net was called with,
so non-square latents work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F

from cxr_fgbg.errors import ConfigError

__all__ = ["AttentionStore", "CaptureProcessor", "capture_cross_attention", "cross_attention_layers"]

BLOCKS = ("down", "mid", "up")
# Processors whose computation CaptureProcessor reproduces exactly; anything else is refused.
_DEFAULT_PROCESSORS = {"AttnProcessor", "AttnProcessor2_0"}
_REFUSED_HINTS = {
    "XFormers": "xformers attention is enabled (pipe.disable_xformers_memory_efficient_attention())",
    "Sliced": "attention slicing is enabled (pipe.disable_attention_slicing())",
    "Fused": "fused QKV projections are enabled (pipe.unfuse_qkv_projections())",
}


def _block_of(name: str) -> str:
    head = name.split(".", 1)[0]
    return {"down_blocks": "down", "mid_block": "mid", "up_blocks": "up"}.get(head, head)


def cross_attention_layers(unet: Any) -> list[str]:
    """Processor keys of the U-Net's cross-attention layers, in forward order."""
    return [name for name in unet.attn_processors if name.endswith("attn2.processor")]


def _grid_for(latent_hw: tuple[int, int], tokens: int) -> tuple[int, int, int]:
    """(h, w, halvings) of a layer with `tokens` positions; stride-2 convs round up (ceil)."""
    h, w = latent_hw
    k = 0
    while h * w > tokens:
        h, w, k = (h + 1) // 2, (w + 1) // 2, k + 1
    if h * w != tokens:
        raise RuntimeError(f"cannot place {tokens} attention positions on the latent grid {latent_hw}")
    return h, w, 2**k


class AttentionStore:
    """Float32 running sums of head-averaged cross-attention, per layer, per slot.

    A slot is what one row of the U-Net batch is added to: by default row i -> slot i; the caller can
    route rows to slots (`slots`), e.g. several timesteps of one image into the same slot. With
    `cfg=True` the batch is [unconditional; conditional] and only the conditional half is kept.
    """

    def __init__(self, cfg: bool = False, downsampling: Iterable[int] | None = None) -> None:
        self.cfg = cfg
        self.downsampling = None if downsampling is None else {int(d) for d in downsampling}
        self.latent_hw: tuple[int, int] | None = None
        self.slots: torch.Tensor | None = None
        self.sums: dict[str, torch.Tensor] = {}
        self.grids: dict[str, tuple[int, int, int]] = {}
        self.calls = 0

    def reset(self) -> None:
        self.sums.clear()
        self.grids.clear()
        self.calls = 0

    def add(self, name: str, probs: torch.Tensor, heads: int) -> None:
        """`probs`: (batch * heads, positions, tokens), batch-major, as `get_attention_scores` returns."""
        if self.latent_hw is None:
            raise RuntimeError("AttentionStore.latent_hw is unknown: call the U-Net inside capture_cross_attention")
        rows, positions, tokens = probs.shape
        batch = rows // heads
        mean = probs.reshape(batch, heads, positions, tokens).mean(dim=1, dtype=torch.float32)
        if self.cfg:
            if batch % 2:
                raise RuntimeError(f"cfg=True needs an even batch ([uncond; cond]), got {batch}")
            mean = mean[batch // 2:]
        h, w, factor = _grid_for(self.latent_hw, positions)
        if self.downsampling is not None and factor not in self.downsampling:
            return
        slots = self.slots if self.slots is not None else torch.arange(mean.shape[0])
        if slots.numel() != mean.shape[0]:
            raise RuntimeError(f"{slots.numel()} slots for a conditional batch of {mean.shape[0]}")
        slots = slots.to(mean.device)
        needed = int(slots.max()) + 1
        current = self.sums.get(name)
        if current is None or current.shape[0] < needed or current.shape[1:] != mean.shape[1:]:
            grown = torch.zeros((needed, positions, tokens), dtype=torch.float32, device=mean.device)
            if current is not None and current.shape[1:] == mean.shape[1:]:
                grown[: current.shape[0]] = current
            current = grown
        current.index_add_(0, slots, mean)
        self.sums[name] = current
        self.grids[name] = (h, w, factor)
        self.calls += 1

    def layer_maps(self) -> dict[str, torch.Tensor]:
        """Per layer: (slots, tokens, h, w) summed attention at the layer's own grid."""
        out = {}
        for name, total in self.sums.items():
            h, w, _ = self.grids[name]
            out[name] = total.reshape(total.shape[0], h, w, total.shape[2]).permute(0, 3, 1, 2)
        return out

    def maps(self, mode: str = "bilinear", size: tuple[int, int] | None = None) -> torch.Tensor:
        """(slots, tokens, H, W): every layer brought to the latent grid (or `size`) and summed."""
        size = tuple(size or self.latent_hw or ())
        layers = self.layer_maps()
        if not layers:
            raise RuntimeError("no cross-attention was captured (no U-Net call, or every layer deselected)")
        slots = max(m.shape[0] for m in layers.values())
        total = None
        for layer in layers.values():
            up = layer if tuple(layer.shape[-2:]) == size else F.interpolate(
                layer, size=size, mode=mode, **({"align_corners": False} if mode == "bilinear" else {})
            )
            if up.shape[0] < slots:
                up = F.pad(up, (0, 0, 0, 0, 0, 0, 0, slots - up.shape[0]))
            total = up if total is None else total + up
        return total


class CaptureProcessor:
    """diffusers' `AttnProcessor` computation, plus recording of the cross-attention probabilities."""

    def __init__(self, store: AttentionStore, name: str) -> None:
        self.store = store
        self.name = name

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        is_cross = encoder_hidden_states is not None
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        )
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        query = attn.head_to_batch_dim(query)
        key = attn.head_to_batch_dim(key)
        value = attn.head_to_batch_dim(value)
        attention_probs = attn.get_attention_scores(query, key, attention_mask)
        if is_cross:
            self.store.add(self.name, attention_probs, attn.heads)
        hidden_states = torch.bmm(attention_probs, value)
        hidden_states = attn.batch_to_head_dim(hidden_states)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def _check_capturable(unet: Any) -> None:
    """Refuse set-ups whose attention our processor would silently change or miss."""
    # Fusion, xformers and slicing all work by swapping processors, so their classes tell; after
    # `unfuse_qkv_projections()` the default processors (which use to_q/to_k/to_v) are back.
    for name, processor in unet.attn_processors.items():
        kind = type(processor).__name__
        for hint, message in _REFUSED_HINTS.items():
            if hint in kind:
                raise ConfigError(f"cannot capture cross-attention: {message}; layer {name} uses {kind}")
        if name.endswith("attn2.processor") and kind not in _DEFAULT_PROCESSORS:
            raise ConfigError(
                f"cannot capture cross-attention: layer {name} uses the custom processor {kind}; "
                "reset it with unet.set_default_attn_processor() or pipe.unet.set_attn_processor(AttnProcessor2_0())"
            )


@contextlib.contextmanager
def capture_cross_attention(
    unet: Any,
    store: AttentionStore | None = None,
    *,
    cfg: bool = False,
    blocks: Iterable[str] = BLOCKS,
    downsampling: Iterable[int] | None = None,
) -> Iterator[AttentionStore]:
    """Record the cross-attention of every U-Net call inside the block; restore the processors after.

    `blocks` selects down / mid / up layers, `downsampling` the resolutions (latent size / layer size).
    """
    blocks = set(blocks)
    unknown = blocks - set(BLOCKS)
    if unknown:
        raise ConfigError(f"unknown U-Net block(s) {sorted(unknown)}: use down, mid, up")
    _check_capturable(unet)
    store = store if store is not None else AttentionStore(cfg=cfg, downsampling=downsampling)
    originals = dict(unet.attn_processors)
    selected = [n for n in cross_attention_layers(unet) if _block_of(n) in blocks]
    if not selected:
        raise ConfigError(f"no cross-attention layer in the selected U-Net blocks {sorted(blocks)}")
    processors = dict(originals)
    for name in selected:
        processors[name] = CaptureProcessor(store, name)

    def remember_latent(_module: Any, args: tuple, kwargs: dict) -> None:
        sample = args[0] if args else kwargs["sample"]
        store.latent_hw = (int(sample.shape[-2]), int(sample.shape[-1]))

    hook = unet.register_forward_pre_hook(remember_latent, with_kwargs=True)
    try:
        unet.set_attn_processor(dict(processors))  # the call empties the dict it is given
        yield store
    finally:
        hook.remove()
        unet.set_attn_processor(dict(originals))
