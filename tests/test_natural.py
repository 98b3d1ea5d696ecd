"""Natural-image readers on small fixture trees in each dataset's released layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxr_fgbg.data.natural import index_natural
from cxr_fgbg.errors import InputDataError


def save_image(path: Path, width: int, height: int, mode: str = "RGB", value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (width, height), value if mode == "L" else (value, 60, 30)).save(path)
    return path


def read_outputs(out: Path):
    samples = pd.read_csv(out / "samples.csv", dtype=str, keep_default_na=False)
    skipped = pd.read_csv(out / "skipped.csv", dtype=str, keep_default_na=False)
    return samples.set_index("sample_id"), skipped, json.loads((out / "index.json").read_text())


# --------------------------------------------------------------------------- CUB
def make_cub(tmp: Path) -> Path:
    base = tmp / "CUB_200_2011"
    rels = ["001.Black_footed_Albatross/Black_Footed_Albatross_0001_1.jpg",
            "001.Black_footed_Albatross/Black_Footed_Albatross_0002_2.jpg",
            "002.Laysan_Albatross/Laysan_Albatross_0003_3.jpg",
            "002.Laysan_Albatross/Laysan_Albatross_0004_4.jpg"]
    for rel in rels:
        save_image(base / "images" / rel, 40, 30)
    for rel in rels[:3]:  # the fourth image has no segmentation
        save_image((tmp / "segmentations" / rel).with_suffix(".png"), 40, 30, "L", 255)
    (base / "images.txt").write_text("".join(f"{i} {r}\n" for i, r in enumerate(rels, 1)))
    (base / "train_test_split.txt").write_text("1 1\n2 0\n3 1\n4 0\n")
    # image 2: box wider than the image (out of bounds -> skipped)
    (base / "bounding_boxes.txt").write_text("1 5.0 6.0 20.0 10.0\n2 30.0 0.0 25.0 10.0\n3 0.0 0.0 40.0 30.0\n"
                                             "4 1.0 1.0 2.0 2.0\n")
    return base


def test_cub(tmp_path):
    base = make_cub(tmp_path)
    summary = index_natural("cub", base, tmp_path / "out", progress=False)
    samples, skipped, info = read_outputs(tmp_path / "out")
    assert summary["samples"] == 2 and info["root"] == str(tmp_path.resolve())
    row = samples.loc["cub_CUB_200_2011__images__001.Black_footed_Albatross__Black_Footed_Albatross_0001_1"]
    assert json.loads(row["boxes"]) == [[5.0, 6.0, 20.0, 10.0]]
    assert row["concept"] == "bird" and row["prompt"] == "a photo of a bird" and row["split"] == "train"
    assert row["mask_path"] == "segmentations/001.Black_footed_Albatross/Black_Footed_Albatross_0001_1.png"
    assert (row["width"], row["height"]) == ("40", "30") and row["class_name"] == "Black footed Albatross"
    assert (tmp_path / row["image_path"]).is_file()
    reasons = dict(zip(skipped["path"].map(lambda p: Path(p).name), skipped["reason"], strict=True))
    assert "outside the 40x30 image" in reasons["Black_Footed_Albatross_0002_2.jpg"]
    assert reasons["Laysan_Albatross_0004_4.jpg"] == "no segmentation mask in segmentations/"


def test_cub_bad_bounding_box_line_names_line(tmp_path):
    base = make_cub(tmp_path)
    (base / "bounding_boxes.txt").write_text("1 5.0 6.0 20.0\n")
    with pytest.raises(InputDataError, match=r"bounding_boxes.txt line 1: expected 5 fields"):
        index_natural("cub", tmp_path, tmp_path / "out", progress=False)


# --------------------------------------------------------------------------- Stanford Dogs
DOG_XML = """<annotation><folder>02085620</folder><filename>{name}</filename>
<size><width>{w}</width><height>{h}</height><depth>3</depth></size>
{objects}</annotation>"""
DOG_OBJECT = """<object><name>Chihuahua</name><pose>Unspecified</pose><truncated>0</truncated>
<difficult>0</difficult><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>"""


def test_dogs_every_object_and_splits(tmp_path):
    from scipy.io import savemat

    breed = "n02085620-Chihuahua"
    for name in ("n02085620_1", "n02085620_2", "n02085620_3"):
        save_image(tmp_path / "Images" / breed / f"{name}.jpg", 50, 40)
    ann = tmp_path / "Annotation" / breed
    ann.mkdir(parents=True)
    two = DOG_OBJECT.format(1, 1, 10, 20) + DOG_OBJECT.format(21, 5, 50, 40)
    (ann / "n02085620_1").write_text(DOG_XML.format(name="n02085620_1", w=50, h=40, objects=two))
    # annotated at twice the size of the file on disk: boxes are rescaled
    (ann / "n02085620_2").write_text(DOG_XML.format(name="n02085620_2", w=100, h=80,
                                                    objects=DOG_OBJECT.format(11, 21, 40, 60)))
    (ann / "n02085620_3").write_text("<annotation><object>")  # broken XML
    lists = tmp_path / "lists"
    lists.mkdir()
    savemat(lists / "train_list.mat", {"file_list": np.array([f"{breed}/n02085620_1.jpg"], dtype=object)})
    savemat(lists / "test_list.mat", {"file_list": np.array([f"{breed}/n02085620_2.jpg"], dtype=object)})
    index_natural("dogs", tmp_path, tmp_path / "out", progress=False)
    samples, skipped, _ = read_outputs(tmp_path / "out")
    one = samples.loc["dogs_Images__n02085620-Chihuahua__n02085620_1"]
    # 1-based inclusive corners: xmin 1..xmax 10 -> x 0, w 10
    assert json.loads(one["boxes"]) == [[0, 0, 10, 20], [20, 4, 30, 36]]
    assert one["split"] == "train" and one["class_name"] == "Chihuahua" and one["concept"] == "dog"
    two_row = samples.loc["dogs_Images__n02085620-Chihuahua__n02085620_2"]
    assert json.loads(two_row["boxes"]) == [[5, 10, 15, 20]] and two_row["split"] == "test"
    assert len(skipped) == 1 and "unparsable annotation XML" in skipped["reason"][0]


# --------------------------------------------------------------------------- Stanford Cars
def cars_struct(rows):
    dtype = [("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"), ("bbox_y2", "O"), ("class", "O"), ("fname", "O")]
    array = np.zeros((1, len(rows)), dtype=dtype)
    for i, row in enumerate(rows):
        for key, value in zip(("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"), row, strict=True):
            array[0, i][key] = np.array([[value]]) if not isinstance(value, str) else np.array([value])
    return array


def test_cars_devkit_mat_files(tmp_path):
    from scipy.io import savemat

    devkit = tmp_path / "devkit"
    devkit.mkdir()
    save_image(tmp_path / "cars_train" / "00001.jpg", 60, 40)
    save_image(tmp_path / "cars_train" / "00002.jpg", 60, 40)
    save_image(tmp_path / "cars_test" / "00001.jpg", 30, 20)
    savemat(devkit / "cars_train_annos.mat",
            {"annotations": cars_struct([(1, 2, 60, 40, 2, "00001.jpg"), (5, 5, 90, 10, 1, "00002.jpg")])})
    savemat(devkit / "cars_test_annos_withlabels.mat", {"annotations": cars_struct([(3, 4, 12, 14, 1, "00001.jpg")])})
    savemat(devkit / "cars_meta.mat",
            {"class_names": np.array([["AM General Hummer SUV 2000", "Acura RL Sedan 2012"]], dtype=object)})
    summary = index_natural("cars", tmp_path, tmp_path / "out", progress=False)
    samples, skipped, _ = read_outputs(tmp_path / "out")
    assert summary["splits"] == {"train": 1, "test": 1}
    train = samples.loc["cars_cars_train__00001"]
    assert json.loads(train["boxes"]) == [[0, 1, 60, 39]]  # x1=1..x2=60 inclusive covers all 60 columns
    assert train["class_name"] == "Acura RL Sedan 2012" and train["prompt"] == "a photo of a car"
    test = samples.loc["cars_cars_test__00001"]
    assert json.loads(test["boxes"]) == [[2, 3, 10, 11]] and test["class_name"] == "AM General Hummer SUV 2000"
    assert list(skipped["reason"]) == ["box 1 [4, 4, 86, 6] lies outside the 60x40 image"]


def test_cars_without_devkit_is_a_clear_error(tmp_path):
    with pytest.raises(InputDataError, match=r"cars_train_annos\.mat"):
        index_natural("cars", tmp_path, tmp_path / "out", progress=False)


# --------------------------------------------------------------------------- Human3.6M
def test_h36m_coco_json_and_subject_split(tmp_path):
    save_image(tmp_path / "images" / "s_01_act_02_subact_01_ca_01" / "f_000001.jpg", 64, 48)
    save_image(tmp_path / "images" / "s_09_act_02_subact_01_ca_01" / "f_000001.jpg", 64, 48)
    save_image(tmp_path / "images" / "s_11_act_02_subact_01_ca_01" / "f_000001.jpg", 64, 48)
    coco = {
        "images": [
            {"id": 1, "file_name": "images/s_01_act_02_subact_01_ca_01/f_000001.jpg", "width": 64, "height": 48},
            {"id": 2, "file_name": "images/s_09_act_02_subact_01_ca_01/f_000001.jpg", "width": 64, "height": 48},
            {"id": 3, "file_name": "images/s_11_act_02_subact_01_ca_01/f_000001.jpg", "width": 64, "height": 48},
        ],
        "annotations": [{"id": 1, "image_id": 1, "bbox": [10, 5, 20, 30]},
                        {"id": 2, "image_id": 2, "bbox": [0, 0, 64, 48]}],
    }
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    index_natural("h36m", tmp_path, tmp_path / "out", progress=False)
    samples, skipped, _ = read_outputs(tmp_path / "out")
    assert list(samples["split"]) == ["train", "test"] and list(samples["class_name"]) == ["S1", "S9"]
    assert json.loads(samples["boxes"].iloc[0]) == [[10, 5, 20, 30]] and samples["concept"].iloc[0] == "person"
    assert list(skipped["reason"]) == ["no person box for this frame"]


def test_h36m_csv_corners_and_missing_column(tmp_path):
    save_image(tmp_path / "S5" / "Walking" / "0001.jpg", 64, 48)
    (tmp_path / "boxes.csv").write_text("image_path,x1,y1,x2,y2\nS5/Walking/0001.jpg,10,5,30,35\n"
                                        "S5/Walking/0002.jpg,1,1,5,5\n")
    index_natural("h36m", tmp_path, tmp_path / "out", annotations=tmp_path / "boxes.csv", progress=False)
    samples, skipped, _ = read_outputs(tmp_path / "out")
    assert json.loads(samples["boxes"].iloc[0]) == [[10, 5, 20, 30]] and samples["split"].iloc[0] == "train"
    assert list(skipped["reason"]) == ["image file not found"]
    (tmp_path / "bad.csv").write_text("image_path,x,y\nS5/Walking/0001.jpg,1,2\n")
    with pytest.raises(InputDataError, match=r"bad\.csv: missing column\(s\) w, h"):
        index_natural("h36m", tmp_path, tmp_path / "out", annotations=tmp_path / "bad.csv", progress=False)


# --------------------------------------------------------------------------- generic folder / CSV
def test_folder_layout_with_splits_and_masks(tmp_path):
    save_image(tmp_path / "train" / "red_panda" / "a.jpg", 20, 10)
    save_image(tmp_path / "masks" / "train" / "red_panda" / "a.png", 20, 10, "L", 255)
    save_image(tmp_path / "test" / "cat" / "b.png", 16, 16)
    save_image(tmp_path / "masks" / "test" / "cat" / "b.png", 8, 8, "L", 255)  # wrong size
    (tmp_path / "cat_notes.doc").write_text("x")
    index_natural("folder", tmp_path, tmp_path / "out", progress=False)
    samples, skipped, _ = read_outputs(tmp_path / "out")
    row = samples.loc["folder_train__red_panda__a"]
    assert (row["concept"], row["prompt"], row["split"]) == ("red panda", "a photo of a red panda", "train")
    assert row["mask_path"] == "masks/train/red_panda/a.png" and row["boxes"] == "[]"
    reasons = dict(zip(skipped["path"], skipped["reason"], strict=True))
    assert reasons["test/cat/b.png"] == "mask is 8x8, image is 16x16"
    assert reasons["cat_notes.doc"] == "not an image file type (.doc)"


def test_csv_table_and_missing_column(tmp_path):
    save_image(tmp_path / "img" / "1.jpg", 30, 20)
    save_image(tmp_path / "img" / "2.jpg", 30, 20)
    (tmp_path / "labels.csv").write_text(
        "image_path,concept,x,y,w,h,split\nimg/1.jpg,horse,1,2,10,5,val\nimg/2.jpg,horse,0,0,0,5,train\n"
        "img/3.jpg,horse,,,,,train\n"
    )
    index_natural("folder", tmp_path, tmp_path / "out", csv=tmp_path / "labels.csv", progress=False)
    samples, skipped, _ = read_outputs(tmp_path / "out")
    assert list(samples.index) == ["folder_img__1"]
    assert json.loads(samples["boxes"].iloc[0]) == [[1, 2, 10, 5]] and samples["split"].iloc[0] == "validate"
    assert sorted(skipped["reason"]) == ["box 1 has non-positive size (w=0, h=5)", "image file not found"]
    (tmp_path / "nocol.csv").write_text("path,concept\n1.jpg,horse\n")
    with pytest.raises(InputDataError, match=r"nocol\.csv: missing column image_path"):
        index_natural("folder", tmp_path, tmp_path / "out", csv=tmp_path / "nocol.csv", progress=False)


def test_cli_index_natural(tmp_path):
    from cxr_fgbg.cli.app import app

    make_cub(tmp_path)
    result = CliRunner().invoke(app, ["index-natural", "--dataset", "cub", "--root", str(tmp_path),
                                      "--out", str(tmp_path / "out"), "--no-progress",
                                      "--concept", "songbird"])
    assert result.exit_code == 0, result.output
    assert "2 samples indexed, 2 skipped" in result.output
    samples, _, _ = read_outputs(tmp_path / "out")
    assert set(samples["prompt"]) == {"a photo of a songbird"}
    bad = CliRunner().invoke(app, ["index-natural", "--dataset", "coco", "--root", str(tmp_path),
                                   "--out", str(tmp_path / "o2")])
    assert bad.exit_code != 0 and "choose one of folder, cub, dogs, cars, h36m" in str(bad.exception)
