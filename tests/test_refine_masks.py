"""Refined masks M: latent-grid rule, eq. 6 on known differences, RePaint inpainting, M_crop, batch job."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import torch
from PIL import Image

from cxr_fgbg.data.geometry import Geometry
from cxr_fgbg.masks import inpaint as inpaint_mod
from cxr_fgbg.masks.crop_ablation import background_strip, crop_ablation_mask, flip_background_in
from cxr_fgbg.masks.gmm import majority_filter
from cxr_fgbg.masks.inpaint import encode_images, inpaint_background, latent_grid_mask
from cxr_fgbg.masks.morphology import close_and_fill
from cxr_fgbg.masks.refine import mask_from_difference, refine_masks, run_refine, upsample_mask
from cxr_fgbg.masks.settings import RefineSettings


def test_latent_mask_any_rule_never_shrinks():
    mask = np.zeros((1, 64, 64), dtype=bool)
    mask[0, 9, 30] = True  # one image pixel -> latent pixel (9 // 4, 30 // 4) = (2, 7)
    mask[0, 40:48, 40:44] = True  # exactly latent rows 10-11, col 10
    lat = latent_grid_mask(mask, (16, 16))[0, 0].numpy() > 0
    expected = np.zeros((16, 16), dtype=bool)
    expected[2, 7] = True
    expected[10:12, 10] = True
    assert np.array_equal(lat, expected)
    assert np.all(upsample_mask(lat, (64, 64))[mask[0]])  # footprint covers M_pre


def test_upsample_mask_is_pure_repetition():
    m = np.array([[1, 0], [0, 1]], dtype=bool)
    assert np.array_equal(upsample_mask(m, (4, 4)), np.kron(m, np.ones((2, 2), dtype=bool)))


def test_eq6_difference_gmm_and_mask_pre():
    image = np.full((3, 32, 32), 0.2, dtype=np.float32)
    image[:, 8:20, 10:22] = 0.9  # the object
    recon = np.full_like(image, 0.2)  # background inpainted: the object is gone
    pre = np.zeros((32, 32), dtype=bool)
    pre[4:24, 6:26] = True  # over-estimated preliminary mask
    out = mask_from_difference(image, recon, pre)
    truth = np.zeros((32, 32), dtype=bool)
    truth[8:20, 10:22] = True
    assert out.reason is None
    assert np.array_equal(out.mask, majority_filter(truth))  # the square minus its 4 corner pixels
    assert out.mask.sum() == 12 * 12 - 4
    # M_pre smaller than the object: M is cut to M_pre (no dilation by the AND)
    small = np.zeros((8, 8), dtype=bool)  # on a 4x coarser grid
    small[3, 3] = True  # image pixels 12-15 x 12-15
    out_small = mask_from_difference(image, recon, small)
    expected = np.zeros((32, 32), dtype=bool)
    expected[12:16, 12:16] = True
    assert np.array_equal(out_small.mask, expected)


def test_closing_and_fill_stay_inside_mask_pre():
    ring = np.zeros((20, 20), dtype=bool)
    ring[5:15, 5:15] = True
    ring[8:12, 8:12] = False  # a hole
    filled = close_and_fill(ring, closing=False, fill_holes=True)
    assert filled[5:15, 5:15].all() and filled.sum() == 100
    image = np.zeros((1, 20, 20), np.float32)
    image[0][ring] = 1.0
    pre = np.zeros((20, 20), dtype=bool)
    pre[5:15, 5:13] = True
    out = mask_from_difference(image, np.zeros_like(image), pre, majority_filter=False, fill_holes=True)
    assert not (out.mask & ~pre).any()
    assert out.mask[8:12, 8:12].all()  # the hole is filled inside M_pre


def test_repaint_keeps_known_region_exact_and_is_seeded(tiny_pipeline, monkeypatch):
    pipe = tiny_pipeline
    captured = []
    real_decode = inpaint_mod.decode_latents
    monkeypatch.setattr(inpaint_mod, "decode_latents", lambda vae, z: captured.append(z.clone()) or real_decode(vae, z))
    images = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    masks = np.zeros((2, 64, 64), dtype=bool)
    masks[:, 16:40, 20:44] = True
    out_a = inpaint_background(pipe, images, masks, "No acute cardiopulmonary process.", [1, 2], num_inference_steps=3)
    out_b = inpaint_background(pipe, images, masks, "No acute cardiopulmonary process.", [1, 3], num_inference_steps=3)
    z0 = encode_images(pipe.vae, images)
    lat = latent_grid_mask(masks, (16, 16)).bool().expand_as(z0)
    assert torch.equal(captured[0][~lat], z0[~lat])  # background latents = the clean latent
    assert not torch.allclose(captured[0][lat], z0[lat], atol=1e-2)  # the M_pre region was generated
    assert torch.equal(out_a[0], out_b[0])  # same seed, same image
    assert not torch.equal(out_a[1], out_b[1])  # another seed, another inpainting
    assert out_a.shape == (2, 1, 64, 64) and out_a.min() >= 0 and out_a.max() <= 1


def test_nine_channel_inpainting_unet_gets_mask_and_masked_image(tiny_pipeline):
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    base = tiny_pipeline
    config = dict(base.unet.config)
    config["in_channels"] = 9
    unet = UNet2DConditionModel.from_config(config)
    pipe = StableDiffusionPipeline(vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, unet=unet,
                                   scheduler=base.scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    seen = []
    unet.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    images = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    masks = np.zeros((1, 64, 64), dtype=bool)
    masks[:, 0:8, 0:12] = True  # latent rows 0-1, cols 0-2
    out = inpaint_background(pipe, images, masks, "No pneumothorax.", [0], num_inference_steps=2)
    assert out.shape == (1, 1, 64, 64)
    assert len(seen) == 2 and seen[0].shape == (1, 9, 16, 16)
    expected = np.zeros((16, 16), dtype=np.float32)
    expected[0:2, 0:3] = 1
    assert np.array_equal(seen[0][0, 4].numpy(), expected)
    masked = encode_images(base.vae, images * torch.from_numpy(~masks[:, None]).float())
    assert torch.allclose(seen[0][:, 5:], masked, atol=1e-5)


def test_flip_background_known_indices():
    image = np.tile(np.arange(8, dtype=np.float32), (1, 6, 1))  # value = column index
    pre = np.zeros((6, 8), dtype=bool)
    pre[:, 5:8] = True
    assert background_strip(pre) == ("left", 5)
    assert np.array_equal(flip_background_in(image, pre)[0, 0], [0, 1, 2, 3, 4, 4, 3, 2])
    pre2 = np.zeros((6, 8), dtype=bool)
    pre2[:, 2:8] = True  # strip thinner than the box: mirrored, then repeated
    assert np.array_equal(flip_background_in(image, pre2)[0, 0], [0, 1, 1, 0, 0, 1, 1, 0])
    assert flip_background_in(image, np.ones((6, 8), dtype=bool)) is None


def test_flip_fills_each_blob_of_a_mask_spanning_the_image_from_background_only():
    image = (10 * np.arange(6)[:, None] + np.arange(10)[None]).astype(np.float32)[None]  # value = 10 row + col
    pre = np.zeros((6, 10), dtype=bool)
    pre[0:4, 0:5] = True  # blob A, touching the top and left edges
    pre[2:6, 8:10] = True  # blob B, touching the bottom and right edges: together their box spans the image
    assert background_strip(pre) is None  # the whole-mask reading had nothing to flip here
    filled = flip_background_in(image, pre)[0]
    # A: the right strip (cols 5-9) mirrored; where that source is B (rows 2-3, cols 8-9), the bottom strip
    assert np.array_equal(filled[0:4, 0:5], [[9, 8, 7, 6, 5], [19, 18, 17, 16, 15],
                                             [50, 51, 27, 26, 25], [40, 41, 37, 36, 35]])
    # B: the left strip (cols 0-7) mirrored, sources in col 7 then 6, all background
    assert np.array_equal(filled[2:6, 8:10], [[27, 26], [37, 36], [47, 46], [57, 56]])
    assert np.array_equal(filled[~pre], image[0][~pre])


def test_flip_falls_back_to_the_mean_of_usable_background():
    image = (10 * np.arange(4)[:, None] + np.arange(4)[None]).astype(np.float32)[None]
    ring = np.ones((4, 4), dtype=bool)
    ring[1, 1] = ring[2, 2] = False  # one component whose box is the image: no strip at all
    filled = flip_background_in(image, ring)[0]
    assert np.array_equal(filled[ring], np.full(14, (11 + 22) / 2)) and filled[1, 1] == 11 and filled[2, 2] == 22
    wide = (10 * np.arange(4)[:, None] + np.arange(8)[None]).astype(np.float32)[None]
    pre = np.zeros((4, 8), dtype=bool)
    pre[:, 5:8] = True  # left strip only; its mirrored columns 4 and 3 lie outside the valid area
    valid = np.ones((4, 8), dtype=bool)
    valid[:, 3:5] = False
    filled = flip_background_in(wide, pre, valid)[0]
    mean_usable = 10 * 1.5 + 1  # columns 0-2 of rows 0-3
    assert np.array_equal(filled[:, 5:8], [[mean_usable, mean_usable, 10 * r + 2] for r in range(4)])
    assert flip_background_in(image, np.zeros((4, 4), dtype=bool)) is None
    assert flip_background_in(wide, pre, valid=pre) is None  # no usable background


def test_crop_ablation_finds_both_blobs_of_a_bilateral_finding():
    yy, xx = np.mgrid[:48, :48]
    image = (0.1 + 0.02 * np.sin(xx / 3.0))[None].astype(np.float32)  # faint texture along the columns
    discs = ((yy - 8) ** 2 + (xx - 8) ** 2 <= 25) | ((yy - 39) ** 2 + (xx - 39) ** 2 <= 25)
    image[0][discs] = 0.9
    pre = np.zeros((48, 48), dtype=bool)
    pre[0:17, 0:17] = pre[31:48, 31:48] = True
    out = crop_ablation_mask(image, pre)
    assert out.reason is None
    assert (out.mask & discs).sum() / (out.mask | discs).sum() > 0.85
    nothing = crop_ablation_mask(image, np.ones((48, 48), dtype=bool))
    assert nothing.reason is not None and not nothing.mask.any()


def test_crop_ablation_finds_the_object():
    yy, xx = np.mgrid[:48, :48]
    image = (0.1 + 0.02 * np.sin(xx / 3.0))[None].astype(np.float32)  # faint texture
    disc = (yy - 30) ** 2 + (xx - 30) ** 2 <= 36
    image[0][disc] = 0.9
    pre = np.zeros((48, 48), dtype=bool)
    pre[20:41, 20:41] = True
    out = crop_ablation_mask(image, pre)
    assert out.reason is None
    inter, union = (out.mask & disc).sum(), (out.mask | disc).sum()
    assert inter / union > 0.85


def _write_case(root, name, hw, box, geometry, mask_pre=None):
    rng = np.random.default_rng(0)
    img = (rng.random(hw) * 60 + 40).astype(np.uint8)
    y0, y1, x0, x1 = box
    img[y0:y1, x0:x1] = 230
    Image.fromarray(img).save(root / f"{name}.png")
    if mask_pre is None:
        mask_pre = np.zeros(hw, dtype=np.uint8)
        mask_pre[max(0, y0 - 6):y1 + 6, max(0, x0 - 6):x1 + 6] = 1
    np.savez(root / "maps" / f"{name}.npz", heatmap=mask_pre.astype(np.float32), mask_pre=mask_pre,
             geometry=np.array(geometry.to_json()))
    return {"sample_id": name, "dicom_id": name, "category_name": "Pleural Effusion", "split": "test",
            "npz_path": f"maps/{name}.npz", "image_path": f"{name}.png"}


def test_run_refine_writes_original_coordinates_and_resumes(tiny_pipeline, tmp_path):
    (tmp_path / "maps").mkdir()
    rows = [
        _write_case(tmp_path, "a", (80, 100), (20, 50, 30, 60), Geometry.resize_shorter_and_center_crop((80, 100), 64)),
        _write_case(tmp_path, "b", (64, 64), (10, 30, 10, 30), Geometry.identity((64, 64))),
        _write_case(tmp_path, "empty", (64, 64), (0, 0, 0, 0), Geometry.identity((64, 64)),
                    mask_pre=np.zeros((64, 64), np.uint8)),
    ]
    rows.append({**rows[1], "sample_id": "missing", "image_path": "nope.png"})
    pd.DataFrame(rows).to_csv(tmp_path / "heatmaps.csv", index=False)
    settings = RefineSettings(num_inference_steps=2, batch_size=2,
                              background_prompt="No acute cardiopulmonary process.")
    out = tmp_path / "out"
    run = run_refine(tmp_path / "heatmaps.csv", out, pipe=tiny_pipeline, settings=settings, show_progress=False)
    table = pd.read_csv(run.masks_csv, dtype=str, keep_default_na=False)
    skipped = pd.read_csv(out / "skipped.csv")
    assert run.written + run.skipped == 4 and run.kept == 0
    assert set(skipped["sample_id"]) >= {"empty", "missing"}
    assert list(table.columns[:4]) == ["sample_id", "image_path", "mask_path", "mask_kind"]
    assert set(table["mask_kind"]) <= {"refined"} and "category_name" in table.columns
    for _, row in table.iterrows():
        mask = np.asarray(Image.open(out / row["mask_path"]))
        pre = np.load(tmp_path / "maps" / f"{row['sample_id']}.npz")["mask_pre"] > 0
        assert mask.shape == pre.shape  # original image coordinates
        assert set(np.unique(mask)) <= {0, 255}
        assert not ((mask > 0) & ~pre).any()  # M never leaves M_pre
    again = run_refine(tmp_path / "heatmaps.csv", out, pipe=tiny_pipeline, settings=settings, show_progress=False)
    assert again.written == 0 and again.kept == run.written
    # M_pre export (the U-Net(M_pre) ablation) needs no model
    pre_run = run_refine(tmp_path / "heatmaps.csv", tmp_path / "pre", settings=RefineSettings(method="pre"),
                         show_progress=False)
    assert set(pd.read_csv(tmp_path / "pre" / "skipped.csv")["sample_id"]) == {"empty", "missing"}
    assert pre_run.written == 2  # 'empty' and 'missing' (no image for the U-Net) are skipped
    exported = np.asarray(Image.open(tmp_path / "pre" / "masks" / "a.png")) > 0
    assert np.array_equal(exported, np.load(tmp_path / "maps" / "a.npz")["mask_pre"] > 0)


def test_run_refine_skip_reasons_are_fixed_phrases_counted_in_one_log_line(tmp_path, caplog):
    (tmp_path / "maps").mkdir()
    good = _write_case(tmp_path, "good", (32, 32), (8, 16, 8, 16), Geometry.identity((32, 32)))
    empty = _write_case(tmp_path, "empty", (32, 32), (0, 0, 0, 0), Geometry.identity((32, 32)),
                        mask_pre=np.zeros((32, 32), np.uint8))
    lost = [{**_write_case(tmp_path, f"lost{k}", (32, 32), (8, 16, 8, 16), Geometry.identity((32, 32))),
             "image_path": path} for k, path in ((1, "nope1.png"), (2, "sub/nope2.png"))]
    rows = [good, empty, *lost, {**good, "sample_id": "nomap", "npz_path": "maps/nomap.npz"}]
    pd.DataFrame(rows).to_csv(tmp_path / "heatmaps.csv", index=False)
    out = tmp_path / "out"
    with caplog.at_level("WARNING", logger="cxr_fgbg.masks.refine"):
        run = run_refine(tmp_path / "heatmaps.csv", out, settings=RefineSettings(method="pre"), show_progress=False)
    assert run.written == 1 and run.skipped == 4
    skipped = pd.read_csv(out / "skipped.csv", dtype=str, keep_default_na=False).set_index("sample_id")
    assert skipped.loc["lost1", "reason"] == skipped.loc["lost2", "reason"] == "image file not found"
    assert skipped.loc["lost2", "image_path"] == str(tmp_path / "sub" / "nope2.png")  # the path is in a column
    assert skipped.loc["lost2", "path"] == "maps/lost2.npz"
    assert skipped.loc["nomap", "reason"] == "heat-map file not found"
    assert skipped.loc["empty", "reason"] == "M_pre is empty: nothing to refine"
    expected = (f"refine: 4 samples skipped: 2 image file not found, 1 M_pre is empty: nothing to refine, "
                f"1 heat-map file not found; see {out / 'skipped.csv'}")
    assert expected in caplog.messages
    assert any("--image-root" in message for message in caplog.messages)
    # the lost image turns up: the resumed run refines it and skipped.csv no longer lists it
    shutil.copy(tmp_path / "lost1.png", tmp_path / "nope1.png")
    again = run_refine(tmp_path / "heatmaps.csv", out, settings=RefineSettings(method="pre"), show_progress=False)
    assert (again.written, again.kept, again.skipped) == (1, 1, 3)
    assert "lost1" not in set(pd.read_csv(out / "skipped.csv", dtype=str)["sample_id"])


def test_refine_masks_in_memory_matches_shapes(tiny_pipeline):
    images = torch.rand(3, 1, 64, 64, generator=torch.Generator().manual_seed(2))
    pre = np.zeros((3, 16, 16), dtype=bool)
    pre[:, 4:10, 4:10] = True  # given on the latent grid
    results = refine_masks(tiny_pipeline, images, pre, seeds=[0, 1, 2], settings=RefineSettings(num_inference_steps=2))
    for r in results:
        assert r.mask.shape == (64, 64) and r.difference.shape == (64, 64)
        assert np.array_equal(r.mask_pre, np.kron(pre[0], np.ones((4, 4), dtype=bool)))
        assert not (r.mask & ~r.mask_pre).any()
