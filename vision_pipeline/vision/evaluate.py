"""Evaluate a YOLO checkpoint on a dataset split: the numbers the promotion gate compares.

Plain Python (no Dagster, no ClearML). The promotion gate evaluates the production checkpoint and
the new one with this same function, on the same split of the same (new) dataset, so the two mAP50
values differ only by the weights.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

from vision_pipeline.settings import configure_ultralytics, work_dir
from vision_pipeline.vision.errors import VisionInputError


class IncompatibleModelError(VisionInputError):
    """The checkpoint predicts other classes than the dataset has: its mAP50 there means nothing."""


def checkpoint_class_names(weights: Path) -> list[str]:
    """Class names stored in a ultralytics ``.pt`` checkpoint, in id order."""
    model = _load(weights)
    names = model.names
    return [str(names[i]) for i in sorted(names)] if isinstance(names, dict) else [str(n) for n in names]


def dataset_class_names(data_yaml: Path) -> list[str]:
    data = yaml.safe_load(Path(data_yaml).read_text(encoding="utf-8")) or {}
    names = data.get("names")
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names, key=int)]
    return [str(n) for n in names or []]


def _load(weights: Path):
    weights = Path(weights)
    if not weights.is_file():
        raise VisionInputError("checkpoint not found", path=weights)
    configure_ultralytics()
    from ultralytics import YOLO

    from vision_pipeline.vision.training import _disable_integrations

    _disable_integrations()  # the validator adds integration callbacks as the trainer does
    try:
        return YOLO(str(weights), task="detect")
    except Exception as exc:  # noqa: BLE001 - torch/ultralytics raise many types for a bad file
        raise VisionInputError(f"not a readable YOLO checkpoint ({type(exc).__name__}: {exc})", path=weights) from exc


def evaluate_map50(
    weights: Path,
    data_yaml: Path,
    imgsz: int,
    *,
    split: str = "val",
    batch: int = 16,
    device: str = "cpu",
) -> float:
    """mAP50 of ``weights`` on ``split`` of the dataset described by ``data_yaml`` (ultralytics' own val).

    Raises :class:`IncompatibleModelError` when the checkpoint's class names differ from the
    dataset's, and :class:`VisionInputError` for a missing or unreadable checkpoint or dataset YAML.
    Nothing is written outside the project's work folder (``plots=False``, temporary ``project``).
    """
    data_yaml = Path(data_yaml)
    if not data_yaml.is_file():
        raise VisionInputError("dataset YAML not found", path=data_yaml)
    model = _load(weights)
    names = model.names
    model_names = [str(names[i]) for i in sorted(names)] if isinstance(names, dict) else [str(n) for n in names]
    data_names = dataset_class_names(data_yaml)
    if model_names != data_names:
        raise IncompatibleModelError(
            f"checkpoint classes {model_names} differ from the dataset's {data_names}", path=weights
        )
    scratch = work_dir() / "evaluate"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        metrics = model.val(
            data=str(data_yaml.resolve()), imgsz=int(imgsz), batch=int(batch), device=device, split=split,
            plots=False, verbose=False, save_json=False, project=tmp, name="val", exist_ok=True, workers=0,
        )
    value = float(metrics.box.map50)
    if value != value:  # NaN: no labels in the split
        raise VisionInputError(f"mAP50 on split '{split}' is not a number (no labelled images?)", path=data_yaml)
    return value
