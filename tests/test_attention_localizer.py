"""`Localizer`: word maps are sums of token maps, seeds reproduce, timesteps follow the paper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxr_fgbg.attention.heatmap import select_timesteps
from cxr_fgbg.attention.localizer import Localizer, token_weights
from cxr_fgbg.attention.settings import LocalizeSettings
from cxr_fgbg.errors import InputDataError

PROMPT = "Moderate cardiomegaly with mild pulmonary edema."


@pytest.fixture(scope="module")
def localizer(tiny_pipeline):
    return Localizer(tiny_pipeline, LocalizeSettings(timesteps=[251], batch_size=4), seed=0)


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    img = rng.random((72, 64)).astype(np.float32)  # taller than wide: the centre crop cuts 4 rows each side
    img[20:40, 10:30] += 1.0
    return img


def test_default_timesteps_are_the_last_40_of_50_ddim_steps(tiny_pipeline):
    steps = select_timesteps(LocalizeSettings(), tiny_pipeline.scheduler.config)
    assert steps == list(range(781, 0, -20))
    assert len(steps) == 40
    fast = select_timesteps(LocalizeSettings(preset="fast"), tiny_pipeline.scheduler.config)
    assert fast == [781, 581, 381, 201, 1]


def test_token_maps_shape_and_word_map_equals_sum_of_subword_maps(localizer, image, tiny_tokenizer):
    from test_attention_tokens import split_word

    prompt, split = split_word(tiny_tokenizer)
    other = next(w for w in prompt.rstrip(".").split() if w.lower() != split.lower())
    tokens = localizer.tokenize(prompt)
    maps = localizer.token_maps(image, prompt)
    assert maps.shape == (tokens.n_tokens, 72, 64)
    assert np.isnan(maps[:, :4]).all() and not np.isnan(maps[:, 4:68]).any()
    spans = localizer.word_spans(prompt, split)
    assert len(spans.token_indices) > 1  # split into sub-words by the tiny tokenizer
    word = localizer.word_map(image, prompt, [split])
    expected = maps[list(spans.token_indices)].sum(0)
    np.testing.assert_allclose(word[4:68], expected[4:68], rtol=1e-5, atol=1e-6)
    both = localizer.word_map(image, prompt, [split, other])
    indices = localizer.word_spans(prompt, [split, other]).token_indices
    assert len(indices) > len(spans.token_indices)
    np.testing.assert_allclose(both[4:68], maps[list(indices)].sum(0)[4:68], rtol=1e-5, atol=1e-6)
    weights = token_weights(spans, tokens.n_tokens, "mean")  # the `subword_reduce: mean` option
    assert np.isclose(weights.sum(), 1.0) and np.count_nonzero(weights) == len(spans.token_indices)


def test_same_seed_same_map_other_seed_other_map(localizer, image):
    a = localizer.word_map(image, PROMPT, "edema", seed=3)
    b = localizer.word_map(image, PROMPT, "edema", seed=3)
    c = localizer.word_map(image, PROMPT, "edema", seed=4)
    np.testing.assert_array_equal(a, b)
    assert np.nanmax(np.abs(a - c)) > 1e-6


def test_batched_maps_equal_single_maps_and_per_timestep_sums(localizer, image):
    prepared = localizer.prepare(image)
    pixels = torch.stack([prepared.pixels, torch.flip(prepared.pixels, dims=[-2])])
    prompts = [PROMPT, "Small left pleural effusion."]
    steps = [1, 501]
    batched = localizer.latent_token_maps(pixels, prompts, ["a", "b"], timesteps=steps)
    single = localizer.latent_token_maps(pixels[1:], prompts[1:], ["b"], timesteps=steps)
    torch.testing.assert_close(batched[1], single[0], rtol=1e-4, atol=1e-5)
    per_t = localizer.latent_token_maps(pixels, prompts, ["a", "b"], per_timestep=True, timesteps=steps)
    assert per_t.shape[1] == 2
    torch.testing.assert_close(per_t.sum(1), batched, rtol=1e-4, atol=1e-5)


def test_missing_or_truncated_word_is_an_error_with_reason(localizer, image):
    with pytest.raises(InputDataError, match="none of the words"):
        localizer.word_map(image, PROMPT, ["pneumothorax"])
    long_prompt = "no acute process " * 12 + "small left pleural effusion"
    with pytest.raises(InputDataError, match="truncated"):
        localizer.word_map(image, long_prompt, ["effusion"])


def test_rgb_and_uint8_input_is_converted_for_a_grey_vae(localizer):
    rgb = (np.random.default_rng(1).random((64, 96, 3)) * 255).astype(np.uint8)
    out = localizer.word_map(rgb, PROMPT, "edema")
    assert out.shape == (64, 96) and np.isfinite(out[:, 16:80]).all()


def test_clean_latent_is_the_scaled_posterior_mean(tiny_pipeline):
    from cxr_fgbg.attention.heatmap import encode_latents

    vae = tiny_pipeline.vae
    pixels = torch.rand(1, vae.config.in_channels, 64, 64, generator=torch.Generator().manual_seed(0))
    z0 = encode_latents(vae, pixels)
    with torch.no_grad():
        posterior = vae.encode(pixels * 2 - 1).latent_dist
    torch.testing.assert_close(z0, posterior.mean * vae.config.scaling_factor)
    torch.testing.assert_close(encode_latents(vae, pixels), z0)  # no sampling: deterministic
