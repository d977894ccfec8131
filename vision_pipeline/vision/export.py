"""Export a trained YOLO checkpoint (ONNX, TorchScript) and check that ONNX Runtime agrees with PyTorch.

Plain Python: no Dagster, no ClearML, nothing downloaded.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vision_pipeline.settings import configure_ultralytics
from vision_pipeline.vision.errors import VisionInputError

if TYPE_CHECKING:
    import numpy as np
    from ultralytics import YOLO

SUPPORTED_FORMATS: dict[str, str] = {"onnx": ".onnx", "torchscript": ".torchscript"}
# Opset 17: the highest that ultralytics uses for older torch releases, supported by the TorchScript-based
# torch.onnx exporter and by every onnxruntime >= 1.13 (this project pins a far newer one). Capped by the
# installed onnx package below.
ONNX_OPSET = 17
# A match between the two backends needs at least this IoU (same class).
MATCH_IOU = 0.5


def _onnx_opset() -> int:
    import onnx

    return min(ONNX_OPSET, onnx.defs.onnx_opset_version())


def _check_imgsz(imgsz: int) -> int:
    if int(imgsz) != imgsz or imgsz < 32 or imgsz % 32:
        raise VisionInputError(f"imgsz must be a positive multiple of 32 (the model stride); got {imgsz}")
    return int(imgsz)


def _require_file(path: Path, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise VisionInputError(f"{what} not found", path=path)
    return path.resolve()


def export_model(
    weights: Path,
    out_dir: Path,
    *,
    imgsz: int,
    formats: Sequence[str] = ("onnx", "torchscript"),
) -> dict[str, Path]:
    """Export ``weights`` (a YOLO ``.pt``) to each format; returns ``{format: file in out_dir}``.

    Fixed input ``1x3ximgszximgsz`` (no dynamic axes, batch 1, FP32, no embedded NMS), exported on the
    CPU; ONNX with opset :data:`ONNX_OPSET` and onnxslim simplification, then loaded once in ONNX
    Runtime to prove it runs. ultralytics writes exports next to the checkpoint, so the checkpoint is
    copied into a scratch folder inside ``out_dir`` first and only the exported files are moved out:
    nothing is left beside ``weights`` or in the current directory. Files are named after the weights'
    stem (``best.onnx``, ``best.torchscript``) and replace existing ones.
    """
    weights = _require_file(weights, "model weights")
    if weights.suffix.lower() != ".pt":
        raise VisionInputError("expected a PyTorch .pt checkpoint to export", path=weights)
    imgsz = _check_imgsz(imgsz)
    wanted = list(dict.fromkeys(str(f).lower() for f in formats))
    unknown = [f for f in wanted if f not in SUPPORTED_FORMATS]
    if not wanted or unknown:
        raise VisionInputError(f"unsupported export format(s) {unknown or list(formats)}; choose from {sorted(SUPPORTED_FORMATS)}")

    configure_ultralytics()
    from ultralytics import YOLO

    out_dir = Path(out_dir).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    exported: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out_dir) as scratch:
        staged = Path(scratch) / weights.name
        shutil.copy2(weights, staged)
        model = YOLO(str(staged), task="detect")
        for fmt in wanted:
            options: dict[str, Any] = {"opset": _onnx_opset(), "simplify": True} if fmt == "onnx" else {}
            produced = model.export(
                format=fmt, imgsz=imgsz, device="cpu", half=False, int8=False, dynamic=False, batch=1, nms=False,
                verbose=False, **options,
            )
            if not produced or not Path(produced).is_file():
                raise RuntimeError(f"ultralytics {fmt} export of {weights} produced no file (got {produced!r})")
            target = out_dir / f"{weights.stem}{SUPPORTED_FORMATS[fmt]}"
            shutil.move(str(produced), target)
            exported[fmt] = target
    if "onnx" in exported:
        _check_onnx_runs(exported["onnx"], imgsz)
    return exported


def _check_onnx_runs(path: Path, imgsz: int) -> None:
    """Load the file in ONNX Runtime (CPU) and check its fixed input shape."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shape = list(session.get_inputs()[0].shape)
    if shape != [1, 3, imgsz, imgsz]:
        raise RuntimeError(f"{path}: exported input shape {shape}, expected [1, 3, {imgsz}, {imgsz}]")


@dataclass
class ParityReport:
    """PyTorch vs ONNX Runtime on the same images (see :func:`check_parity` for the rules)."""

    images: int
    pt_detections: int
    onnx_detections: int
    matched: int
    max_box_diff_px: float
    class_mismatches: int
    box_tolerance_px: float
    passed: bool
    details: list[str] = field(default_factory=list)
    conf: float = 0.25
    conf_margin: float = 0.02
    max_conf_diff: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Det:
    cls: int
    conf: float
    box: tuple[float, float, float, float]


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _detect(model: YOLO, image: np.ndarray, *, imgsz: int, conf: float) -> list[_Det]:
    result = model.predict(image, imgsz=imgsz, conf=conf, device="cpu", rect=False, verbose=False)[0]
    boxes = result.boxes
    xyxy = boxes.xyxy.cpu().numpy().tolist()
    confs = boxes.conf.cpu().numpy().tolist()
    classes = boxes.cls.cpu().numpy().astype(int).tolist()
    return [_Det(int(c), float(p), (b[0], b[1], b[2], b[3])) for b, p, c in zip(xyxy, confs, classes, strict=True)]


def _greedy_match(a: list[_Det], b: list[_Det], *, same_class: bool) -> list[tuple[int, int]]:
    """Pairs (index in a, index in b) by descending IoU >= MATCH_IOU, each detection used once."""
    candidates = [
        (_iou(da.box, db.box), i, j)
        for i, da in enumerate(a)
        for j, db in enumerate(b)
        if not same_class or da.cls == db.cls
    ]
    candidates.sort(key=lambda t: -t[0])
    used_a: set[int] = set()
    used_b: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for iou, i, j in candidates:
        if iou < MATCH_IOU:
            break
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        pairs.append((i, j))
    return pairs


def check_parity(
    weights: Path,
    onnx_path: Path,
    images: list[Path],
    *,
    imgsz: int,
    conf: float = 0.25,
    box_tolerance_px: float = 2.0,
    conf_margin: float = 0.02,
) -> ParityReport:
    """Run the ``.pt`` model (PyTorch) and the ONNX model (ONNX Runtime) on ``images`` and compare detections.

    Both go through ultralytics' predictor with identical pre/post-processing (square ``imgsz``
    letterbox, same NMS), so only the inference backend differs. Per image, detections of each
    backend down to ``conf - conf_margin`` are matched greedily by IoU (>= 0.5) within the same class.

    Threshold handling: a detection scoring within ``conf_margin`` of ``conf`` may legitimately sit on
    either side of the threshold in the two backends (0.2501 vs 0.2499). So only detections with
    ``conf >= conf + conf_margin`` in one backend *must* have a same-class partner in the other (found
    among that backend's detections down to ``conf - conf_margin``); detections near the threshold are
    matched when possible but never reported as missing.

    Failures (listed in ``details``): a required detection whose overlapping partner has another class
    (``class_mismatches``), a required detection with no partner at all, and a matched pair whose
    boxes differ by more than ``box_tolerance_px`` in any coordinate (pixels of the original image).
    ``pt_detections``/``onnx_detections`` count detections at ``conf``; ``matched`` counts matched
    pairs where at least one side reaches ``conf``; ``max_box_diff_px`` is the largest coordinate
    difference over those pairs. Unreadable images raise :class:`VisionInputError`.
    """
    from vision_pipeline.vision.predict import read_image_bgr

    weights = _require_file(weights, "model weights")
    onnx_path = _require_file(onnx_path, "ONNX model")
    imgsz = _check_imgsz(imgsz)
    if not 0.0 < conf < 1.0:
        raise VisionInputError(f"conf must be in (0, 1); got {conf}")
    if not images:
        raise VisionInputError("check_parity needs at least one image")
    configure_ultralytics()
    from ultralytics import YOLO

    pt_model = YOLO(str(weights), task="detect")
    onnx_model = YOLO(str(onnx_path), task="detect")
    low = max(conf - conf_margin, 0.001)
    high = conf + conf_margin
    report = ParityReport(
        images=0, pt_detections=0, onnx_detections=0, matched=0, max_box_diff_px=0.0, class_mismatches=0,
        box_tolerance_px=float(box_tolerance_px), passed=False, conf=conf, conf_margin=conf_margin,
    )
    missing = 0
    too_far = 0
    for path in images:
        image = read_image_bgr(Path(path))
        dets = {
            "pt": _detect(pt_model, image, imgsz=imgsz, conf=low),
            "onnx": _detect(onnx_model, image, imgsz=imgsz, conf=low),
        }
        report.images += 1
        report.pt_detections += sum(d.conf >= conf for d in dets["pt"])
        report.onnx_detections += sum(d.conf >= conf for d in dets["onnx"])
        pairs = _greedy_match(dets["pt"], dets["onnx"], same_class=True)
        for i, j in pairs:
            a, b = dets["pt"][i], dets["onnx"][j]
            if max(a.conf, b.conf) < conf:
                continue  # both below the threshold: not a detection of either backend
            report.matched += 1
            diff = max(abs(x - y) for x, y in zip(a.box, b.box, strict=True))
            report.max_box_diff_px = max(report.max_box_diff_px, diff)
            report.max_conf_diff = max(report.max_conf_diff, abs(a.conf - b.conf))
            if diff > box_tolerance_px:
                too_far += 1
                report.details.append(
                    f"{path}: class {a.cls} box differs by {diff:.2f} px (pt {_fmt(a)} vs onnx {_fmt(b)})"
                )
        matched_pt = {i for i, _ in pairs}
        matched_onnx = {j for _, j in pairs}
        for side, other in (("pt", "onnx"), ("onnx", "pt")):
            taken = matched_pt if side == "pt" else matched_onnx
            other_taken = matched_onnx if side == "pt" else matched_pt
            leftovers = [d for k, d in enumerate(dets[side]) if k not in taken and d.conf >= high]
            others = [d for k, d in enumerate(dets[other]) if k not in other_taken]
            cross = dict(_greedy_match(leftovers, others, same_class=False))
            for k, det in enumerate(leftovers):
                if k in cross:
                    partner = others[cross[k]]
                    report.class_mismatches += 1
                    report.details.append(
                        f"{path}: {side} class {det.cls} vs {other} class {partner.cls} ({side} {_fmt(det)}, {other} {_fmt(partner)})"
                    )
                else:
                    missing += 1
                    report.details.append(f"{path}: {side} detection {_fmt(det)} has no {other} counterpart")
    report.passed = report.class_mismatches == 0 and missing == 0 and too_far == 0
    return report


def _fmt(det: _Det) -> str:
    x0, y0, x1, y1 = det.box
    return f"cls {det.cls} conf {det.conf:.4f} [{x0:.1f}, {y0:.1f}, {x1:.1f}, {y1:.1f}]"
