"""Background-prompt guidance: the formula, and its agreement with diffusers' own sampling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from PIL import Image

from cxr_fgbg.masks.guidance import combine_eps, guided_eps, initial_latents, sample_guided, sweep_guidance

Y_F = "Small left pleural effusion."
Y_B = "No acute cardiopulmonary process."
STEPS = 3


def test_combine_eps_known_values():
    f, b = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 3.0])
    assert torch.equal(combine_eps(f, b, 1.0), f)
    assert torch.equal(combine_eps(f, b, 0.0), b)
    # w = -1: 2 * b - f
    assert torch.allclose(combine_eps(f, b, -1.0), torch.tensor([-1.0, 7.0]))
    assert torch.allclose(combine_eps(f, b, 3.0), torch.tensor([5.0, -9.0]))


def test_guided_eps_equals_manual_combination_of_two_unet_calls(tiny_pipeline):
    pipe = tiny_pipeline
    z = initial_latents(pipe, 2, seed=3)
    t = pipe.scheduler.config.num_train_timesteps // 2
    emb_f = pipe.encode_prompt([Y_F] * 2, "cpu", 1, False)[0]
    emb_b = pipe.encode_prompt([Y_B] * 2, "cpu", 1, False)[0]
    with torch.no_grad():
        eps_f = pipe.unet(z, t, encoder_hidden_states=emb_f).sample
        eps_b = pipe.unet(z, t, encoder_hidden_states=emb_b).sample
    for w in (-1.0, 0.0, 1.0, 2.5):
        got = guided_eps(pipe.unet, z, t, emb_f, emb_b, w)
        assert torch.allclose(got, w * eps_f - (w - 1) * eps_b, atol=1e-5)
    assert not torch.allclose(eps_f, eps_b, atol=1e-4)  # the prompts matter, so the check can fail


def test_guided_eps_runs_one_branch_where_the_other_has_weight_zero(tiny_pipeline):
    pipe = tiny_pipeline
    z = initial_latents(pipe, 2, seed=3)
    emb_f = pipe.encode_prompt([Y_F] * 2, "cpu", 1, False)[0]
    emb_b = pipe.encode_prompt([Y_B] * 2, "cpu", 1, False)[0]
    batch_sizes = []
    hook = pipe.unet.register_forward_pre_hook(lambda _module, args: batch_sizes.append(args[0].shape[0]))
    try:
        with torch.no_grad():
            for w in (1.0, 0.0, -1.0):
                guided_eps(pipe.unet, z, 500, emb_f, emb_b, w)
    finally:
        hook.remove()
    assert batch_sizes == [2, 2, 4]  # w = 1 and w = 0: one branch; w = -1: both in one batched pass


def _diffusers(pipe, prompt, latents, **kwargs):
    out = pipe(prompt, num_inference_steps=STEPS, latents=latents.clone(), output_type="pt", height=64, width=64,
               **kwargs)
    return out.images


def test_w1_is_plain_foreground_and_w0_plain_background(tiny_pipeline):
    pipe = tiny_pipeline
    z = initial_latents(pipe, 2, seed=5)
    ours_1 = sample_guided(pipe, Y_F, Y_B, 1.0, num_inference_steps=STEPS, latents=z)
    ours_0 = sample_guided(pipe, Y_F, Y_B, 0.0, num_inference_steps=STEPS, latents=z)
    ref_f = _diffusers(pipe, [Y_F] * 2, z, guidance_scale=1.0)
    ref_b = _diffusers(pipe, [Y_B] * 2, z, guidance_scale=1.0)
    assert torch.allclose(ours_1, ref_f, atol=2e-4)
    assert torch.allclose(ours_0, ref_b, atol=2e-4)
    assert (ref_f - ref_b).abs().max() > 1e-3  # y_f and y_b give different images


def test_w_above_one_equals_diffusers_cfg_with_background_as_negative_prompt(tiny_pipeline):
    pipe = tiny_pipeline
    z = initial_latents(pipe, 1, seed=7)
    ours = sample_guided(pipe, Y_F, Y_B, 3.0, num_inference_steps=STEPS, latents=z)
    ref = _diffusers(pipe, [Y_F], z, guidance_scale=3.0, negative_prompt=[Y_B])
    assert torch.allclose(ours, ref, atol=2e-4)


def test_sweep_writes_images_and_contact_sheet(tiny_pipeline, tmp_path):
    sheet = sweep_guidance(tiny_pipeline, Y_F, Y_B, [-1, 1, 3], tmp_path, num_images=2, num_inference_steps=2,
                           seed=1, show_progress=False)
    for w in ("-1", "1", "3"):
        assert sorted(p.name for p in (tmp_path / f"w_{w}").iterdir()) == ["000.png", "001.png"]
    with Image.open(sheet) as img:
        # 3 columns of 64 px + 4 gaps of 2 px; 12 px label + 2 rows of 64 px + 3 gaps
        assert img.size == (3 * 66 + 2, 12 + 2 * 66 + 2)
    a = np.asarray(Image.open(tmp_path / "w_-1" / "000.png"))
    b = np.asarray(Image.open(tmp_path / "w_3" / "000.png"))
    assert a.shape == (64, 64) and not np.array_equal(a, b)


def test_synthetic_set_is_seeded_and_resumes(tiny_pipeline, tmp_path):
    from cxr_fgbg.masks.settings import SyntheticSettings
    from cxr_fgbg.masks.synthetic import synthesize_dataset

    settings = SyntheticSettings(images_per_prompt=2, num_inference_steps=2)
    table = synthesize_dataset(tiny_pipeline, [("effusion", Y_F)], Y_B, tmp_path / "a", settings, seed=4,
                               show_progress=False)
    frame = pd.read_csv(table, keep_default_na=False)
    assert list(frame["sample_id"]) == ["synthetic_effusion_00000", "synthetic_effusion_00001"]
    assert set(frame["split"]) == {"train"} and set(frame["mask_path"]) == {""}
    first = tmp_path / "a" / frame["image_path"][0]
    before = first.stat().st_mtime_ns
    (tmp_path / "a" / frame["image_path"][1]).unlink()
    synthesize_dataset(tiny_pipeline, [("effusion", Y_F)], Y_B, tmp_path / "a", settings, seed=4, show_progress=False)
    assert first.stat().st_mtime_ns == before  # kept, not redrawn
    # the redrawn image equals the one a fresh run draws (noise seeded per image, not per run)
    synthesize_dataset(tiny_pipeline, [("effusion", Y_F)], Y_B, tmp_path / "b", settings, seed=4, show_progress=False)
    name = frame["image_path"][1]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a" / name)), np.asarray(Image.open(tmp_path / "b" / name)))
