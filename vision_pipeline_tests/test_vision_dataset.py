"""Synthetic dataset generation, dataset validation, content hashing and staging (no mocks)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from vision_pipeline.vision.dataset import DatasetStats, content_hash, prepare_dataset, validate_dataset
from vision_pipeline.vision.errors import VisionInputError
from vision_pipeline.vision.synthetic import generate_synthetic_dataset

SMALL = {"n_train": 12, "n_val": 5, "imgsz": 64}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A small valid synthetic dataset under ``tmp_path/src``."""
    root = tmp_path / "src"
    generate_synthetic_dataset(root, **SMALL)
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _set_label(root: Path, rel: str, text: str) -> None:
    (root / rel).write_text(text, encoding="utf-8")


# --- generation -----------------------------------------------------------------------------


def test_generation_is_deterministic(tmp_path: Path) -> None:
    generate_synthetic_dataset(tmp_path / "a", **SMALL, seed=3)
    generate_synthetic_dataset(tmp_path / "b", **SMALL, seed=3)
    generate_synthetic_dataset(tmp_path / "c", **SMALL, seed=4)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert content_hash(tmp_path / "a") == content_hash(tmp_path / "b")
    assert content_hash(tmp_path / "a") != content_hash(tmp_path / "c")
    assert len(content_hash(tmp_path / "a")) == 64


def test_generated_layout_and_yaml(dataset: Path) -> None:
    data = yaml.safe_load((dataset / "data.yaml").read_text())
    assert data["train"] == "images/train" and data["val"] == "images/val"
    assert data["nc"] == 3 and data["names"] == {0: "circle", 1: "square", 2: "triangle"}
    assert len(list((dataset / "images/train").glob("*.png"))) == 12
    assert len(list((dataset / "labels/val").glob("*.txt"))) == 5


def test_labels_are_tight_boxes_of_the_drawn_shapes(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    generate_synthetic_dataset(root, n_train=40, n_val=1, imgsz=96, seed=1)
    checked = 0
    for image_path in sorted((root / "images/train").glob("*.png")):
        pixels = np.asarray(Image.open(image_path).convert("RGB")).astype(np.int32)
        lines = (root / "labels/train" / f"{image_path.stem}.txt").read_text().split("\n")
        boxes = [tuple(float(v) for v in line.split()[1:]) for line in lines if line]
        colours = np.unique(pixels.reshape(-1, 3), axis=0)
        if len(colours) != 1 + len(boxes):  # only solid backgrounds give an exact pixel oracle
            continue
        background = pixels[0, 0] if not any(_inside(0, 0, b, 96) for b in boxes) else pixels[-1, -1]
        foreground = np.any(pixels != background, axis=2)
        covered = np.zeros_like(foreground)
        for cx, cy, w, h in boxes:
            x0, y0 = round((cx - w / 2) * 96), round((cy - h / 2) * 96)
            x1, y1 = round((cx + w / 2) * 96), round((cy + h / 2) * 96)
            region = foreground[y0:y1, x0:x1]
            # tight: the drawn pixels touch all four edges of the box
            assert region[0].any() and region[-1].any() and region[:, 0].any() and region[:, -1].any()
            covered[y0:y1, x0:x1] = True
        assert not (foreground & ~covered).any(), f"{image_path.name}: shape pixels outside every box"
        checked += 1
    assert checked >= 3


def _inside(x: int, y: int, box: tuple[float, ...], size: int) -> bool:
    cx, cy, w, h = (v * size for v in box)
    return cx - w / 2 <= x < cx + w / 2 and cy - h / 2 <= y < cy + h / 2


def test_unknown_class_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(VisionInputError, match="class_names"):
        generate_synthetic_dataset(tmp_path / "ds", class_names=("circle", "dragon"))


# --- validation and stats -------------------------------------------------------------------


def test_validate_dataset_stats(dataset: Path) -> None:
    stats = validate_dataset(dataset)
    assert isinstance(stats, DatasetStats)
    assert stats.root == dataset
    assert stats.class_names == ["circle", "square", "triangle"]
    assert stats.images == {"train": 12, "val": 5}
    for split in ("train", "val"):
        lines = [
            line.split()[0]
            for path in (dataset / "labels" / split).glob("*.txt")
            for line in path.read_text().splitlines()
        ]
        expected = {name: lines.count(str(i)) for i, name in enumerate(stats.class_names)}
        assert stats.instances[split] == expected
        assert sum(expected.values()) >= stats.images[split]  # 1-3 objects per image
    assert stats.content_hash == content_hash(dataset)
    assert json.loads(json.dumps(stats.to_dict()))["images"] == {"train": 12, "val": 5}


def test_image_without_label_is_a_background(dataset: Path) -> None:
    (dataset / "labels/train/img_0000.txt").unlink()
    stats = validate_dataset(dataset)
    assert stats.images["train"] == 12
    assert stats.backgrounds["train"] == 1


def test_hash_ignores_mtime_location_and_label_caches(dataset: Path, tmp_path: Path) -> None:
    before = content_hash(dataset)
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(dataset, copy)  # new mtimes, new absolute path
    (copy / "labels/train.cache").write_bytes(b"ultralytics cache")
    assert content_hash(copy) == before
    _set_label(copy, "labels/train/img_0001.txt", "0 0.5 0.5 0.2 0.2\n")
    assert content_hash(copy) != before


def test_corrupt_image(dataset: Path) -> None:
    image = dataset / "images/train/img_0004.png"
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    with pytest.raises(VisionInputError, match=r"images/train/img_0004\.png: unreadable or corrupt image") as info:
        validate_dataset(dataset)
    assert info.value.path == "images/train/img_0004.png" and info.value.line is None


def test_class_id_out_of_range(dataset: Path) -> None:
    _set_label(dataset, "labels/train/img_0003.txt", "0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n")
    with pytest.raises(VisionInputError) as info:
        validate_dataset(dataset)
    assert str(info.value) == "labels/train/img_0003.txt:2: class id 7 out of range [0, 3)"
    assert (info.value.path, info.value.line) == ("labels/train/img_0003.txt", 2)


def test_coordinates_out_of_range(dataset: Path) -> None:
    _set_label(dataset, "labels/val/img_0001.txt", "1 1.2 0.5 0.2 0.2\n")
    with pytest.raises(VisionInputError, match=r"^labels/val/img_0001\.txt:1: cx 1\.2 outside \[0, 1\]$"):
        validate_dataset(dataset)


def test_zero_size_box(dataset: Path) -> None:
    _set_label(dataset, "labels/train/img_0002.txt", "0 0.5 0.5 0.2 0.2\n\n2 0.5 0.5 0.0 0.3\n")
    with pytest.raises(VisionInputError, match=r"^labels/train/img_0002\.txt:3: box has zero size"):
        validate_dataset(dataset)


def test_wrong_number_of_fields(dataset: Path) -> None:
    _set_label(dataset, "labels/train/img_0005.txt", "0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2\n")
    with pytest.raises(VisionInputError) as info:
        validate_dataset(dataset)
    assert str(info.value) == "labels/train/img_0005.txt:2: expected 5 fields 'class cx cy w h', got 4"


def test_empty_split(dataset: Path) -> None:
    for path in (dataset / "images/val").iterdir():
        path.unlink()
    for path in (dataset / "labels/val").iterdir():
        path.unlink()
    with pytest.raises(VisionInputError, match=r"data\.yaml: split 'val' has no images \(in images/val\)"):
        validate_dataset(dataset)


def test_data_yaml_without_names(dataset: Path) -> None:
    (dataset / "data.yaml").write_text("train: images/train\nval: images/val\nnc: 3\n")
    with pytest.raises(VisionInputError, match=r"data\.yaml: missing 'names'"):
        validate_dataset(dataset)


def test_nc_disagrees_with_names(dataset: Path) -> None:
    (dataset / "data.yaml").write_text("train: images/train\nval: images/val\nnc: 2\nnames: [a, b, c]\n")
    with pytest.raises(VisionInputError, match=r"'nc' is 2 but 'names' lists 3 classes"):
        validate_dataset(dataset)


def test_missing_required_split(dataset: Path) -> None:
    (dataset / "data.yaml").write_text("train: images/train\nnames: [a, b, c]\n")
    with pytest.raises(VisionInputError, match=r"data\.yaml: missing required split 'val'"):
        validate_dataset(dataset)


def test_label_file_without_image(dataset: Path) -> None:
    _set_label(dataset, "labels/train/orphan.txt", "0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(VisionInputError) as info:
        validate_dataset(dataset)
    assert str(info.value) == "labels/train/orphan.txt: label file has no matching image"


# --- staging --------------------------------------------------------------------------------


def test_prepare_synthetic(tmp_path: Path) -> None:
    dest = tmp_path / "work" / "dataset"
    stats = prepare_dataset(dest, synthetic_kwargs={**SMALL, "seed": 2})
    assert stats.root == dest.absolute()
    assert stats.images == {"train": 12, "val": 5}
    assert yaml.safe_load((dest / "data.yaml").read_text())["path"] == str(dest.absolute())
    reference = tmp_path / "reference"
    generate_synthetic_dataset(reference, **SMALL, seed=2)
    assert stats.content_hash == content_hash(reference)  # 'path' is not part of the hash
    assert sorted(p.name for p in dest.parent.iterdir()) == ["dataset"]  # no staging leftovers


def test_prepare_copies_source_and_points_yaml_at_dest(dataset: Path, tmp_path: Path) -> None:
    dest = tmp_path / "staged"
    dest.mkdir()
    (dest / "stale.txt").write_text("from an earlier run")
    stats = prepare_dataset(dest, dataset)
    assert not (dest / "stale.txt").exists()
    assert stats.content_hash == validate_dataset(dataset).content_hash
    data = yaml.safe_load((dest / "data.yaml").read_text())
    assert data["path"] == str(dest.absolute())
    assert (Path(data["path"]) / data["train"]).is_dir()


def test_prepare_missing_source(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_dataset"
    with pytest.raises(VisionInputError) as info:
        prepare_dataset(tmp_path / "dest", missing)
    assert str(info.value) == f"{missing}: source dataset folder does not exist"
    assert not (tmp_path / "dest").exists()


def test_prepare_invalid_source_removes_dest(dataset: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    prepare_dataset(dest, dataset)  # a valid earlier dataset
    _set_label(dataset, "labels/val/img_0000.txt", "9 0.5 0.5 0.2 0.2\n")
    with pytest.raises(VisionInputError, match=r"labels/val/img_0000\.txt:1: class id 9 out of range"):
        prepare_dataset(dest, dataset)
    assert not dest.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no staging leftovers


def test_prepare_refuses_dest_inside_source(dataset: Path) -> None:
    with pytest.raises(VisionInputError, match="overlaps the source folder"):
        prepare_dataset(dataset / "copy", dataset)
    assert validate_dataset(dataset).images["train"] == 12
