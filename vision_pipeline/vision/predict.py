"""Run a detector (exported ONNX in ONNX Runtime, or a ``.pt`` checkpoint in PyTorch) over images, streaming.

Plain Python: no Dagster, no ClearML, nothing downloaded. Memory stays flat however many images go
through: each image's detections are written to ``predictions.jsonl`` and dropped; only the
per-image latencies (floats) are kept for the percentiles.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vision_pipeline.settings import configure_ultralytics
from vision_pipeline.vision.errors import VisionInputError

if TYPE_CHECKING:
    import numpy as np
    from ultralytics import YOLO

MODEL_SUFFIXES = (".onnx", ".pt", ".torchscript")
FIRST_ROWS = 10
_PALETTE = ((255, 56, 56), (56, 56, 255), (40, 180, 40), (255, 157, 0), (200, 56, 200), (0, 170, 230), (120, 120, 0))


def default_sample_images() -> list[Path]:
    """The sample images ultralytics ships inside its package (``ultralytics/assets/*.jpg``)."""
    from vision_pipeline.vision.training import _ultralytics_dir

    return sorted((_ultralytics_dir() / "assets").glob("*.jpg"))


@dataclass
class PredictionStats:
    """Summary of :func:`predict_folder`.

    ``latency_ms`` (``p50``, ``p90``, ``p99``, ``mean``) times the model call per image: letterbox,
    inference and NMS, not decoding the file. ``images_per_second`` is end to end: images divided
    by the wall time of the whole loop (decode, inference, JSONL and previews). ``empty_images``
    counts images without any detection (they have no line in the JSONL).
    """

    images: int
    detections: int
    per_class: dict[str, int]
    latency_ms: dict[str, float]
    images_per_second: float
    jsonl_path: Path
    preview_paths: list[Path] = field(default_factory=list)
    first_rows: list[dict[str, Any]] = field(default_factory=list)
    empty_images: int = 0
    backend: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["jsonl_path"] = str(self.jsonl_path)
        data["preview_paths"] = [str(p) for p in self.preview_paths]
        return data


def load_model(model_path: Path) -> YOLO:
    """A ultralytics ``YOLO`` for an ``.onnx`` (ONNX Runtime), ``.pt`` or ``.torchscript`` detector."""
    model_path = Path(model_path).expanduser()
    if model_path.suffix.lower() not in MODEL_SUFFIXES:
        raise VisionInputError(f"expected a model file ending in one of {', '.join(MODEL_SUFFIXES)}", path=model_path)
    if not model_path.is_file():
        raise VisionInputError("model file not found", path=model_path)
    configure_ultralytics()
    from ultralytics import YOLO

    return YOLO(str(model_path.resolve()), task="detect")


def read_image_bgr(path: Path) -> np.ndarray:
    """Decode an image file to a ``HxWx3`` uint8 BGR array (what ultralytics expects), or raise naming it."""
    import cv2
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise VisionInputError("image not found", path=path)
    try:
        raw = np.fromfile(path, dtype=np.uint8)
        image = cv2.imdecode(raw, cv2.IMREAD_COLOR) if raw.size else None
    except (OSError, cv2.error) as exc:
        raise VisionInputError(f"cannot read image: {exc}", path=path) from exc
    if image is None or image.ndim != 3 or min(image.shape[:2]) < 1:
        raise VisionInputError("cannot decode image (corrupt or not an image format OpenCV reads)", path=path)
    return image


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in [0, 1]) of an ascending list."""
    if not sorted_values:
        return 0.0
    k = (len(sorted_values) - 1) * q
    lo = math.floor(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def _draw_preview(image_bgr: np.ndarray, rows: list[dict[str, Any]], dest: Path) -> None:
    """Boxes and labels drawn with Pillow and its built-in font (ultralytics' Annotator would fetch a font)."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.fromarray(image_bgr[:, :, ::-1].copy())
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    width = max(1, round(max(img.size) / 320))
    for row in rows:
        colour = _PALETTE[row["class_id"] % len(_PALETTE)]
        x0, y0, x1, y1 = row["box_xyxy"]
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=width)
        label = f"{row['class']} {row['confidence']:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        tw, th = right - left, bottom - top
        ty = y0 - th - 4 if y0 - th - 4 >= 0 else y0 + 1
        tx = max(0, min(x0, img.width - tw - 4))  # keep the label inside the image
        draw.rectangle((tx, ty, tx + tw + 4, ty + th + 4), fill=colour)
        draw.text((tx + 2 - left, ty + 2 - top), label, fill=(255, 255, 255), font=font)
    img.save(dest)


def predict_folder(
    model_path: Path,
    images: Iterable[Path],
    out_dir: Path,
    *,
    imgsz: int,
    conf: float = 0.25,
    class_names: list[str] | None = None,
    max_previews: int = 8,
    threads: int | None = None,
) -> PredictionStats:
    """Run the detector over ``images`` one by one and write ``out_dir/predictions.jsonl``.

    ``model_path``: the exported ``.onnx`` (run by ONNX Runtime through ultralytics' AutoBackend, CPU
    provider) or a ``.pt`` / ``.torchscript`` checkpoint (PyTorch, CPU), so their throughput can be
    compared on the same footing: same letterbox to a square ``imgsz``, same NMS, same ``conf``.
    ``threads``: torch CPU threads for ``.pt``/``.torchscript``; ``None`` keeps ultralytics' choice
    (``cpu_count - 1``, at least 1: 2 threads thrash badly on a busy 2-core machine). ONNX Runtime
    keeps its default (one intra-op thread per physical core).

    One JSON line per detection: ``{"image": str path, "class_id": int, "class": name,
    "confidence": float (4 decimals), "box_xyxy": [x0, y0, x1, y1] in pixels of the original image
    (2 decimals)}``. An image without detections writes no line; it still counts in ``images`` (and
    ``empty_images``). ``images`` is consumed lazily (a generator works) and nothing per image is kept
    but its latency. Annotated previews of the first ``max_previews`` images go to
    ``out_dir/previews/NNNN_<stem>.jpg``. An unreadable image raises :class:`VisionInputError`
    naming it (the JSONL then holds the images before it); no images at all is an error too.
    ``class_names`` overrides the names stored in the model.
    """
    if not 0.0 < conf < 1.0:
        raise VisionInputError(f"conf must be in (0, 1); got {conf}")
    if imgsz < 32 or imgsz % 32:
        raise VisionInputError(f"imgsz must be a positive multiple of 32; got {imgsz}")
    if max_previews < 0:
        raise VisionInputError(f"max_previews must be >= 0; got {max_previews}")
    if threads is not None and threads < 1:
        raise VisionInputError(f"threads must be >= 1 or None; got {threads}")
    model = load_model(model_path)
    suffix = Path(model_path).suffix.lower()

    import numpy as np
    import torch

    out_dir = Path(out_dir).expanduser().resolve()
    preview_dir = out_dir / "previews"
    preview_dir.mkdir(parents=True, exist_ok=True)
    jsonl = out_dir / "predictions.jsonl"
    options = {"imgsz": imgsz, "conf": conf, "device": "cpu", "rect": False, "verbose": False}

    previous_threads = torch.get_num_threads()
    latencies: list[float] = []
    per_class: Counter[str] = Counter()
    previews: list[Path] = []
    head: list[dict[str, Any]] = []
    n_images = n_detections = n_empty = 0
    try:
        # Warm-up on a blank frame: builds the predictor / ONNX Runtime session outside the timings.
        model.predict(np.full((imgsz, imgsz, 3), 114, dtype=np.uint8), **options)
        if class_names is not None:
            names = [str(n) for n in class_names]
        else:  # read after the warm-up: for ONNX the names come from the file's metadata via the predictor
            stored = model.names
            names = [str(stored[i]) for i in sorted(stored)] if isinstance(stored, dict) else [str(n) for n in stored]
        if threads is not None and suffix != ".onnx":  # after select_device(), which sets ultralytics' count
            torch.set_num_threads(threads)
        started = time.perf_counter()
        with jsonl.open("w", encoding="utf-8") as sink:
            for item in images:
                path = Path(item)
                image = read_image_bgr(path)
                t0 = time.perf_counter()
                result = model.predict(image, **options)[0]
                latencies.append((time.perf_counter() - t0) * 1000.0)
                boxes = result.boxes
                rows = []
                for cls_id, score, box in zip(
                    boxes.cls.cpu().numpy().astype(int).tolist(),
                    boxes.conf.cpu().numpy().tolist(),
                    boxes.xyxy.cpu().numpy().tolist(),
                    strict=True,
                ):
                    rows.append({
                        "image": str(path),
                        "class_id": cls_id,
                        "class": names[cls_id] if 0 <= cls_id < len(names) else str(cls_id),
                        "confidence": round(float(score), 4),
                        "box_xyxy": [round(float(v), 2) for v in box],
                    })
                for row in rows:
                    sink.write(json.dumps(row) + "\n")
                    per_class[row["class"]] += 1
                if len(head) < FIRST_ROWS:
                    head.extend(rows[: FIRST_ROWS - len(head)])
                if n_images < max_previews:
                    dest = preview_dir / f"{n_images:04d}_{path.stem}.jpg"
                    _draw_preview(image, rows, dest)
                    previews.append(dest)
                n_images += 1
                n_detections += len(rows)
                n_empty += not rows
                del image, result, boxes, rows
        elapsed = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous_threads)
    if n_images == 0:
        raise VisionInputError("no images to run inference on")
    ordered = sorted(latencies)
    latency = {
        "p50": round(_percentile(ordered, 0.50), 3),
        "p90": round(_percentile(ordered, 0.90), 3),
        "p99": round(_percentile(ordered, 0.99), 3),
        "mean": round(sum(ordered) / len(ordered), 3),
    }
    return PredictionStats(
        images=n_images,
        detections=n_detections,
        per_class=dict(sorted(per_class.items())),
        latency_ms=latency,
        images_per_second=round(n_images / elapsed, 2) if elapsed > 0 else 0.0,
        jsonl_path=jsonl,
        preview_paths=previews,
        first_rows=head,
        empty_images=n_empty,
        backend="onnxruntime" if suffix == ".onnx" else "pytorch",
    )
