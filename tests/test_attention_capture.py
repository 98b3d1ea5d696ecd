"""Cross-attention capture: same output as diffusers' default, exact probabilities, restore, refusal."""

from __future__ import annotations

import copy

import pytest
import torch

from cxr_fgbg.attention.capture import (
    AttentionStore,
    CaptureProcessor,
    capture_cross_attention,
    cross_attention_layers,
)
from cxr_fgbg.errors import ConfigError


def _inputs(unet, batch=2, hw=(16, 16), seed=0):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, unet.config.in_channels, *hw, generator=g)
    context = torch.randn(batch, 12, unet.config.cross_attention_dim, generator=g)
    return sample, torch.tensor([500] * batch), context


def test_output_equals_default_processor_and_processors_restored(tiny_pipeline):
    unet = tiny_pipeline.unet
    before = dict(unet.attn_processors)
    sample, t, context = _inputs(unet)
    with torch.no_grad():
        reference = unet(sample, t, encoder_hidden_states=context).sample
        with capture_cross_attention(unet) as store:
            assert all(isinstance(unet.attn_processors[n], CaptureProcessor) for n in cross_attention_layers(unet))
            captured = unet(sample, t, encoder_hidden_states=context).sample
    assert torch.allclose(captured, reference, atol=1e-5)
    assert store.calls == len(cross_attention_layers(unet))
    after = unet.attn_processors
    assert all(after[name] is proc for name, proc in before.items())


def test_probabilities_rows_sum_to_one_and_equal_manual_head_average(tiny_pipeline):
    unet = tiny_pipeline.unet
    sample, t, context = _inputs(unet, batch=2)
    name = cross_attention_layers(unet)[0]
    module = unet.get_submodule(name.removesuffix(".processor"))
    seen = {}

    def grab(_mod, args, kwargs):
        seen["hidden"] = args[0] if args else kwargs["hidden_states"]
        seen["context"] = kwargs["encoder_hidden_states"]

    handle = module.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad(), capture_cross_attention(unet) as store:
            unet(sample, t, encoder_hidden_states=context)
    finally:
        handle.remove()
    sums = store.sums[name]  # (batch, positions, tokens) after ONE call
    assert torch.allclose(sums.sum(-1), torch.ones(sums.shape[:2]), atol=1e-5)
    with torch.no_grad():  # the textbook formula, written out independently of diffusers' helpers
        q = module.to_q(seen["hidden"])
        k = module.to_k(seen["context"])
        b, n, d = q.shape
        heads = module.heads
        q = q.view(b, n, heads, d // heads).transpose(1, 2)
        k = k.view(b, k.shape[1], heads, d // heads).transpose(1, 2)
        probs = torch.softmax(q @ k.transpose(-1, -2) / (d // heads) ** 0.5, dim=-1).mean(1)
    assert torch.allclose(sums, probs, atol=1e-5)


def test_cfg_keeps_only_the_conditional_half(tiny_pipeline):
    unet = tiny_pipeline.unet
    sample, t, context = _inputs(unet, batch=1)
    uncond = torch.zeros_like(context)
    with torch.no_grad():
        with capture_cross_attention(unet) as alone:
            unet(sample, t, encoder_hidden_states=context)
        with capture_cross_attention(unet, cfg=True) as both:
            unet(torch.cat([sample, sample]), torch.cat([t, t]), encoder_hidden_states=torch.cat([uncond, context]))
    for name, total in alone.sums.items():
        assert both.sums[name].shape == total.shape
        assert torch.allclose(both.sums[name], total, atol=1e-5)


def test_running_sums_do_not_grow_and_non_square_grid(tiny_pipeline):
    unet = tiny_pipeline.unet
    sample, t, context = _inputs(unet, batch=1, hw=(16, 12))
    with torch.no_grad(), capture_cross_attention(unet) as store:
        unet(sample, t, encoder_hidden_states=context)
        shapes = {n: s.shape for n, s in store.sums.items()}
        once = {n: s.clone() for n, s in store.sums.items()}
        unet(sample, t, encoder_hidden_states=context)
        unet(sample, t, encoder_hidden_states=context)
    assert {n: s.shape for n, s in store.sums.items()} == shapes
    for name, total in store.sums.items():
        assert total.dtype == torch.float32
        assert torch.allclose(total, 3 * once[name], atol=1e-5)
    grids = {store.grids[n][:2] for n in store.sums}
    assert grids == {(16, 12), (8, 6), (4, 3)}  # latent / 1, / 2 and the mid block at / 4
    maps = store.maps()
    assert maps.shape == (1, 12, 16, 12)
    # Every position's probabilities sum to 1 per call and layer: 3 calls x n layers.
    assert torch.allclose(maps.sum(1), torch.full((1, 16, 12), 3.0 * len(store.sums)), atol=1e-3)


def test_layer_selection_by_block_and_resolution(tiny_pipeline):
    unet = tiny_pipeline.unet
    sample, t, context = _inputs(unet, batch=1)
    with torch.no_grad(), capture_cross_attention(unet, blocks=["up"]) as up_only:
        unet(sample, t, encoder_hidden_states=context)
    assert up_only.sums and all(n.startswith("up_blocks") for n in up_only.sums)
    with torch.no_grad(), capture_cross_attention(unet, AttentionStore(downsampling=[2])) as coarse:
        unet(sample, t, encoder_hidden_states=context)
    assert coarse.sums and all(coarse.grids[n][2] == 2 for n in coarse.sums)


def test_processors_restored_on_error(tiny_pipeline):
    unet = tiny_pipeline.unet
    before = dict(unet.attn_processors)
    with pytest.raises(RuntimeError, match="boom"), capture_cross_attention(unet):
        raise RuntimeError("boom")
    assert all(unet.attn_processors[name] is proc for name, proc in before.items())


def test_refuses_sliced_xformers_and_fused(tiny_pipeline):
    from diffusers.models.attention_processor import SlicedAttnProcessor, XFormersAttnProcessor

    unet = copy.deepcopy(tiny_pipeline.unet)  # fusing adds weights: keep the shared fixture clean
    before = dict(unet.attn_processors)
    try:
        unet.set_attn_processor(SlicedAttnProcessor(1))
        with pytest.raises(ConfigError, match="slicing"), capture_cross_attention(unet):
            pass
        unet.set_attn_processor(XFormersAttnProcessor())
        with pytest.raises(ConfigError, match="xformers"), capture_cross_attention(unet):
            pass
        unet.set_attn_processor(dict(before))
        unet.fuse_qkv_projections()
        with pytest.raises(ConfigError, match="fused"), capture_cross_attention(unet):
            pass
        unet.unfuse_qkv_projections()
        with capture_cross_attention(unet):  # unfused: the default processors are back, capture works
            pass
    finally:
        unet.set_attn_processor(dict(before))
