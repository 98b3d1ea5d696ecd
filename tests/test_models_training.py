"""Text-encoder pre-training and VAE training each lower their loss; both are deterministic for a seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_TEXTS
from test_models_support import _image, quick_settings

from cxr_fgbg.errors import ConfigError
from cxr_fgbg.models.settings import TextPretrainSettings, TinyBundleSettings
from cxr_fgbg.models.text_pretraining import pretrain_text_encoder
from cxr_fgbg.models.tiny import build_text_encoder, build_vae
from cxr_fgbg.models.vae_training import reconstruction_error, train_vae


def _pretrain(tokenizer, seed=0, steps=30):
    torch.manual_seed(0)
    encoder = build_text_encoder(TinyBundleSettings(text_hidden_size=32, text_intermediate_size=64), tokenizer)
    report = pretrain_text_encoder(encoder, tokenizer, TINY_TEXTS * 4,
                                   TextPretrainSettings(steps=steps, batch_size=16), seed=seed, progress=False)
    return encoder, report


def test_text_pretraining_lowers_the_masked_word_loss_and_freezes(tiny_tokenizer):
    encoder, report = _pretrain(tiny_tokenizer)
    assert report.loss_after < 0.8 * report.loss_before
    assert not any(p.requires_grad for p in encoder.parameters())
    assert not encoder.training


def test_text_pretraining_is_deterministic(tiny_tokenizer):
    a, ra = _pretrain(tiny_tokenizer, steps=5)
    b, rb = _pretrain(tiny_tokenizer, steps=5)
    assert ra.loss_after == rb.loss_after
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_mlm_without_transformer_layers_is_refused(tiny_tokenizer):
    encoder = build_text_encoder(TinyBundleSettings(text_layers=0, text_hidden_size=32), tiny_tokenizer)
    with pytest.raises(ConfigError, match="text_layers >= 1"):
        pretrain_text_encoder(encoder, tiny_tokenizer, TINY_TEXTS, TextPretrainSettings(steps=2), 0, progress=False)


def test_mode_none_keeps_weights_and_freezes(tiny_tokenizer):
    encoder = build_text_encoder(TinyBundleSettings(text_hidden_size=32), tiny_tokenizer)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    report = pretrain_text_encoder(encoder, tiny_tokenizer, TINY_TEXTS, TextPretrainSettings(mode="none"), 0, False)
    assert report.loss_after is None
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())
    assert not any(p.requires_grad for p in encoder.parameters())


def _images(n, seed):
    rng = np.random.default_rng(seed)
    kinds = [None, "effusion", "pneumothorax", "cardiomegaly"]
    return torch.tensor(np.stack([_image(rng, kinds[i % 4], 32, 32) for i in range(n)]), dtype=torch.float32)[:, None]


def test_vae_training_lowers_the_validation_reconstruction_error():
    settings = quick_settings()
    torch.manual_seed(0)
    vae = build_vae(settings.tiny)
    train, val = _images(24, 1), _images(6, 2)
    untrained = reconstruction_error(vae, val)
    report = train_vae(vae, train, val, settings.vae_training, seed=0, progress=False)
    assert report.before == untrained
    assert report.after.mse < 0.7 * untrained.mse
    assert report.after.psnr > untrained.psnr
    # PSNR is the mean of per-image 10 log10(1 / MSE); with one image the two must agree exactly
    one = reconstruction_error(vae, val[:1])
    assert one.psnr == pytest.approx(10 * np.log10(1 / one.mse), rel=1e-4)
    assert vae.config.scaling_factor == pytest.approx(report.scaling_factor)
    assert not any(p.requires_grad for p in vae.parameters())
