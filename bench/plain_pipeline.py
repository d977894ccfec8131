"""The plain-Python baseline of benchmark 1: ultralytics train -> export -> predict, no Dagster, no ClearML.

    python bench/plain_pipeline.py --data-dir DIR --out DIR --epochs 3 --imgsz 96 --batch 16 \
        --parity-images 8 --timings out.json

It does the same machine-learning work as one ``dagster asset materialize --select '*'`` run of the
pipeline configured by ``bench.pipeline_bench`` (same data, same hyper-parameters), and nothing else:

1. train ``yolo11n.yaml`` from scratch with ultralytics, with exactly the arguments the pipeline's
   ``TrainConfig`` produces (final validation of ``best.pt`` included, as ultralytics always does);
2. export ``best.pt`` to ONNX with the pipeline's export options (opset 17, onnxslim, batch 1, FP32);
3. predict ``best.pt`` and the ONNX model on the first ``--parity-images`` val images and compare them
   (the pipeline's export parity check does this work);
4. predict the ONNX model over the val images, one JSON line per detection (the inference stage);
5. validate ``best.pt`` on val once more (the pipeline's promotion gate evaluates the candidate).

What it does not do is what the benchmark calls orchestration: step processes, Dagster's event log,
ClearML tasks, job rows, copies into the artifact store with hashing and fsync, dataset copy and
validation, and the asset checks.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

T_START = time.perf_counter()


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _dets(model, image, imgsz: int, conf: float, device: str):
    r = model.predict(image, imgsz=imgsz, conf=conf, device=device, rect=False, verbose=False)[0]
    return list(zip(r.boxes.cls.cpu().numpy().astype(int).tolist(), r.boxes.conf.cpu().numpy().tolist(),
                    r.boxes.xyxy.cpu().numpy().tolist()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True, help="YOLO dataset folder (data.yaml, images/, labels/)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--imgsz", type=int, required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--parity-images", type=int, default=8)
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--timings", type=Path, required=True)
    args = ap.parse_args(argv)

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(out / "ultralytics"))
    os.environ.setdefault("YOLO_VERBOSE", "False")
    timings: dict[str, float] = {}
    t = time.perf_counter()

    import torch  # noqa: F401  (import cost counted like the pipeline's)
    import ultralytics.data.utils as data_utils
    from ultralytics import YOLO
    from ultralytics.utils import SETTINGS

    # The hyper-parameters: the pipeline's TrainConfig is a plain dataclass; using it guarantees identical args.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from vision_pipeline.vision.training import TrainConfig

    # Same environment the pipeline gives ultralytics: no logging integrations, no analytics, no font download.
    SETTINGS.update({k: False for k in ("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb", "sync")})
    data_utils.check_font = lambda *a, **k: None
    timings["import"] = time.perf_counter() - t

    data_yaml = args.data_dir.resolve() / "data.yaml"
    config = TrainConfig(epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, device=args.device)
    amp = bool(getattr(config, "amp", True)) and str(args.device).lower() not in {"cpu", "mps"}  # as train() does

    t = time.perf_counter()
    model = YOLO(config.model, task="detect")
    model.train(data=str(data_yaml), project=str(out / "runs"), name="train", exist_ok=True, plots=False,
                verbose=False, val=True, amp=amp, **config.train_args())
    best = Path(model.trainer.best)
    final_map50 = float(model.trainer.metrics.get("metrics/mAP50(B)", float("nan")))
    timings["train"] = time.perf_counter() - t

    t = time.perf_counter()
    import onnx

    export_dir = out / "export"
    export_dir.mkdir(exist_ok=True)
    staged = export_dir / best.name
    shutil.copy2(best, staged)
    produced = YOLO(str(staged), task="detect").export(
        format="onnx", imgsz=args.imgsz, device="cpu", half=False, int8=False, dynamic=False, batch=1, nms=False,
        verbose=False, opset=min(17, onnx.defs.onnx_opset_version()), simplify=True,
    )
    onnx_path = Path(produced)
    timings["export"] = time.perf_counter() - t

    t = time.perf_counter()
    val_images = sorted((args.data_dir / "images" / "val").glob("*.png"))
    pt_model, onnx_model = YOLO(str(best), task="detect"), YOLO(str(onnx_path), task="detect")
    low = max(args.conf - 0.02, 0.001)
    max_diff, matched = 0.0, 0
    for path in val_images[: args.parity_images]:
        a = _dets(pt_model, str(path), args.imgsz, low, "cpu")
        b = _dets(onnx_model, str(path), args.imgsz, low, "cpu")
        for ca, _, ba in a:
            best_pair = max(((_iou(ba, bb), bb) for cb, _, bb in b if cb == ca), default=(0.0, None))
            if best_pair[0] >= 0.5:
                matched += 1
                max_diff = max(max_diff, max(abs(x - y) for x, y in zip(ba, best_pair[1])))
    timings["parity"] = time.perf_counter() - t

    t = time.perf_counter()
    n_det = 0
    with open(out / "predictions.jsonl", "w", encoding="utf-8") as sink:
        for path in val_images:
            for cls_id, score, box in _dets(onnx_model, str(path), args.imgsz, args.conf, "cpu"):
                sink.write(json.dumps({"image": str(path), "class_id": cls_id, "confidence": round(score, 4),
                                       "box_xyxy": [round(v, 2) for v in box]}) + "\n")
                n_det += 1
    timings["predict"] = time.perf_counter() - t

    t = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        metrics = YOLO(str(best), task="detect").val(
            data=str(data_yaml), imgsz=args.imgsz, batch=16, device=args.device, split="val", plots=False,
            verbose=False, save_json=False, project=tmp, name="val", exist_ok=True, workers=0,
        )
    timings["evaluate"] = time.perf_counter() - t
    timings["total_in_process"] = time.perf_counter() - T_START
    args.timings.write_text(json.dumps({
        "timings": timings, "mAP50_final": final_map50, "mAP50_eval": float(metrics.box.map50),
        "parity_matched": matched, "parity_max_box_diff_px": max_diff, "detections": n_det,
        "images": len(val_images),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
