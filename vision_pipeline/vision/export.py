"""Export a trained YOLO checkpoint (ONNX, TorchScript) and check that ONNX Runtime agrees with PyTorch.

Plain Python: no Dagster, no ClearML, nothing downloaded.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
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
# Scores this close to the threshold may fall on either side of it in the two backends.
DEFAULT_CONF_MARGIN = 0.02


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
        raise VisionInputError(
            f"unsupported export format(s) {unknown or list(formats)}; choose from {sorted(SUPPORTED_FORMATS)}"
        )

    configure_ultralytics()
    import torch
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
            with warnings.catch_warnings():
                # torch's TorchScript-based ONNX exporter and tracer warn about their own deprecation and
                # about tracing constant shapes (fine: the input size is fixed on purpose).
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                produced = model.export(
                    format=fmt, imgsz=imgsz, device="cpu", half=False, int8=False, dynamic=False, batch=1,
                    nms=False, verbose=False, **options,
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
    """PyTorch vs ONNX Runtime on the same images (see :func:`check_parity` for the rules).

    Beyond the detection-level fields: ``max_raw_box_diff_px`` / ``max_raw_score_diff`` compare the
    raw head outputs (every anchor, before NMS) of both backends on the identical input tensor, and
    ``max_conf_diff`` the confidences of matched detections.
    """

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
    conf_margin: float = DEFAULT_CONF_MARGIN
    max_conf_diff: float = 0.0
    missing: int = 0
    max_raw_box_diff_px: float = 0.0
    max_raw_score_diff: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Detection:
    """One detection: class id, confidence and ``(x0, y0, x1, y1)`` box in original-image pixels."""

    cls: int
    conf: float
    box: tuple[float, float, float, float]

    def describe(self) -> str:
        x0, y0, x1, y1 = self.box
        return f"class {self.cls} conf {self.conf:.4f} box [{x0:.1f}, {y0:.1f}, {x1:.1f}, {y1:.1f}]"


@dataclass
class ImageComparison:
    """Outcome of :func:`compare_detections` for one image."""

    pt_detections: int = 0
    onnx_detections: int = 0
    matched: int = 0
    max_box_diff_px: float = 0.0
    max_conf_diff: float = 0.0
    class_mismatches: int = 0
    missing: int = 0
    boxes_off: int = 0
    details: list[str] = field(default_factory=list)


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _greedy_match(a: list[Detection], b: list[Detection], *, same_class: bool) -> list[tuple[int, int]]:
    """Pairs (index in a, index in b) by descending IoU >= MATCH_IOU, each detection used at most once."""
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


def compare_detections(
    pt: list[Detection],
    onnx: list[Detection],
    *,
    conf: float,
    conf_margin: float,
    box_tolerance_px: float,
    where: str = "",
) -> ImageComparison:
    """Compare one image's detections of both backends, each listed down to ``conf - conf_margin``.

    Same-class pairs are matched greedily by IoU (>= :data:`MATCH_IOU`). A pair counts (``matched``, box
    and confidence differences) when at least one side reaches ``conf``; its boxes may differ by at most
    ``box_tolerance_px`` in every coordinate. A detection with ``conf >= conf + conf_margin`` left
    unmatched is a class mismatch when it overlaps (IoU >= MATCH_IOU) a leftover detection of another
    class in the other backend, and missing otherwise. Unmatched detections below ``conf + conf_margin``
    are tolerated: their score may sit on the other side of the threshold in the other backend.
    """
    out = ImageComparison(
        pt_detections=sum(d.conf >= conf for d in pt),
        onnx_detections=sum(d.conf >= conf for d in onnx),
    )
    prefix = f"{where}: " if where else ""
    pairs = _greedy_match(pt, onnx, same_class=True)
    for i, j in pairs:
        a, b = pt[i], onnx[j]
        if max(a.conf, b.conf) < conf:
            continue  # below the threshold in both: a detection of neither backend
        out.matched += 1
        diff = max(abs(x - y) for x, y in zip(a.box, b.box, strict=True))
        out.max_box_diff_px = max(out.max_box_diff_px, diff)
        out.max_conf_diff = max(out.max_conf_diff, abs(a.conf - b.conf))
        if diff > box_tolerance_px:
            out.boxes_off += 1
            out.details.append(
                f"{prefix}boxes differ by {diff:.2f} px > {box_tolerance_px} (pt {a.describe()}; onnx {b.describe()})"
            )
    used = {"pt": {i for i, _ in pairs}, "onnx": {j for _, j in pairs}}
    dets = {"pt": pt, "onnx": onnx}
    for side, other in (("pt", "onnx"), ("onnx", "pt")):
        required = [k for k, d in enumerate(dets[side]) if k not in used[side] and d.conf >= conf + conf_margin]
        if not required:
            continue
        leftovers = [k for k in range(len(dets[other])) if k not in used[other]]
        cross = _greedy_match([dets[side][k] for k in required], [dets[other][k] for k in leftovers], same_class=False)
        partner = {required[a]: leftovers[b] for a, b in cross}
        for k in required:
            det = dets[side][k]
            if k in partner:  # one mismatch per pair: both detections are used up here
                found = dets[other][partner[k]]
                used[side].add(k)
                used[other].add(partner[k])
                out.class_mismatches += 1
                out.details.append(f"{prefix}class differs ({side} {det.describe()}; {other} {found.describe()})")
            else:
                out.missing += 1
                out.details.append(f"{prefix}{side} detection has no {other} counterpart ({det.describe()})")
    return out


def _detect(model: YOLO, image: np.ndarray, *, imgsz: int, conf: float) -> list[Detection]:
    result = model.predict(image, imgsz=imgsz, conf=conf, device="cpu", rect=False, verbose=False)[0]
    boxes = result.boxes
    xyxy = boxes.xyxy.cpu().numpy().tolist()
    confs = boxes.conf.cpu().numpy().tolist()
    classes = boxes.cls.cpu().numpy().astype(int).tolist()
    return [Detection(int(c), float(p), (b[0], b[1], b[2], b[3])) for b, p, c in zip(xyxy, confs, classes, strict=True)]


def _raw_output(model: YOLO, tensor: Any) -> np.ndarray:
    """The head output ``(1, 4 + nc, anchors)`` of the model's (already set up) predictor backend, before NMS."""
    import numpy as np
    import torch

    with torch.inference_mode():
        out = model.predictor.model(tensor)
    if isinstance(out, (list, tuple)):
        out = out[0]
    return out.detach().cpu().float().numpy() if isinstance(out, torch.Tensor) else np.asarray(out, dtype=np.float32)


def check_parity(
    weights: Path,
    onnx_path: Path,
    images: list[Path],
    *,
    imgsz: int,
    conf: float = 0.25,
    box_tolerance_px: float = 2.0,
    conf_margin: float | None = None,
) -> ParityReport:
    """Run the ``.pt`` model (PyTorch) and the ONNX model (ONNX Runtime) on ``images`` and compare them.

    Both go through ultralytics' predictor with identical pre/post-processing (square ``imgsz``
    letterbox, same NMS), so only the inference backend differs. Per image, each backend's detections
    down to ``conf - conf_margin`` are compared by :func:`compare_detections`. ``conf_margin`` defaults
    to ``min(0.02, conf / 2)``.

    Threshold handling: a detection scoring within ``conf_margin`` of ``conf`` may legitimately fall on
    either side of the threshold in the two backends (0.2501 vs 0.2499). So only detections with
    ``conf >= conf + conf_margin`` in one backend *must* have a same-class partner in the other (searched
    among that backend's detections down to ``conf - conf_margin``); detections near the threshold are
    matched when possible but never reported missing. ``pt_detections``/``onnx_detections`` count
    detections at ``conf``.

    The raw head outputs (all anchors, before NMS) of both backends on the identical input tensor are
    compared as well: their box rows may differ by at most ``box_tolerance_px`` (input pixels) and their
    class scores by at most ``conf_margin`` (the assumption behind the threshold rule above). This keeps
    the check meaningful for a weak model whose scores are all below ``conf``.

    ``passed``: no class mismatch, no missing detection, every matched box and the raw outputs within
    tolerance; ``details`` lists every failure. Unreadable images raise :class:`VisionInputError`.
    """
    import numpy as np

    from vision_pipeline.vision.predict import read_image_bgr

    weights = _require_file(weights, "model weights")
    onnx_path = _require_file(onnx_path, "ONNX model")
    imgsz = _check_imgsz(imgsz)
    if not 0.0 < conf < 1.0:
        raise VisionInputError(f"conf must be in (0, 1); got {conf}")
    if conf_margin is None:
        conf_margin = min(DEFAULT_CONF_MARGIN, conf / 2)
    if not 0.0 < conf_margin < conf:
        raise VisionInputError(f"conf_margin must be in (0, conf); got {conf_margin} for conf {conf}")
    if not images:
        raise VisionInputError("check_parity needs at least one image")
    configure_ultralytics()
    from ultralytics import YOLO

    pt_model = YOLO(str(weights), task="detect")
    onnx_model = YOLO(str(onnx_path), task="detect")
    low = conf - conf_margin
    report = ParityReport(
        images=0, pt_detections=0, onnx_detections=0, matched=0, max_box_diff_px=0.0, class_mismatches=0,
        box_tolerance_px=float(box_tolerance_px), passed=False, conf=conf, conf_margin=conf_margin,
    )
    raw_off = 0
    boxes_off = 0
    for item in images:
        path = Path(item)
        image = read_image_bgr(path)
        pt_dets = _detect(pt_model, image, imgsz=imgsz, conf=low)
        onnx_dets = _detect(onnx_model, image, imgsz=imgsz, conf=low)
        tensor = pt_model.predictor.preprocess([image])
        raw_pt, raw_onnx = _raw_output(pt_model, tensor), _raw_output(onnx_model, tensor)
        if raw_pt.shape != raw_onnx.shape:
            raise RuntimeError(f"{path}: PyTorch output {raw_pt.shape} vs ONNX output {raw_onnx.shape}")
        raw_box = float(np.abs(raw_pt[:, :4] - raw_onnx[:, :4]).max())
        raw_score = float(np.abs(raw_pt[:, 4:] - raw_onnx[:, 4:]).max()) if raw_pt.shape[1] > 4 else 0.0
        report.max_raw_box_diff_px = max(report.max_raw_box_diff_px, raw_box)
        report.max_raw_score_diff = max(report.max_raw_score_diff, raw_score)
        if raw_box > box_tolerance_px or raw_score > conf_margin:
            raw_off += 1
            report.details.append(
                f"{path}: raw outputs differ (boxes {raw_box:.3f} px, scores {raw_score:.4f}; "
                f"tolerance {box_tolerance_px} px, {conf_margin})"
            )
        one = compare_detections(
            pt_dets, onnx_dets, conf=conf, conf_margin=conf_margin, box_tolerance_px=box_tolerance_px, where=str(path)
        )
        report.images += 1
        report.pt_detections += one.pt_detections
        report.onnx_detections += one.onnx_detections
        report.matched += one.matched
        report.max_box_diff_px = max(report.max_box_diff_px, one.max_box_diff_px)
        report.max_conf_diff = max(report.max_conf_diff, one.max_conf_diff)
        report.class_mismatches += one.class_mismatches
        report.missing += one.missing
        boxes_off += one.boxes_off
        report.details.extend(one.details)
    report.passed = report.class_mismatches == 0 and report.missing == 0 and boxes_off == 0 and raw_off == 0
    return report
