"""Benchmarks 5, 6 and 8: inference throughput (ONNX Runtime vs PyTorch), inference memory, demo quality.

``train_and_export`` and ``rss_run`` run inside ``bench._worker``; ``throughput`` runs in the bench process.
"""

from __future__ import annotations

import itertools
import json
import resource
import shutil
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import Comparison, median, round_robin

BOX_TOLERANCE_PX = 2.0  # the export parity check's default
CONF_MARGIN = 0.02


def train_and_export(work: str, *, n_train: int, n_val: int, imgsz: int, epochs: int | None,
                     default_recipe: bool) -> dict[str, Any]:
    """Generate the synthetic dataset, train (the default recipe, or a small variant), export ONNX.

    ``default_recipe``: ``generate_synthetic_dataset`` and ``TrainConfig()`` with their defaults — what
    ``make demo`` trains; benchmark 8 reports its mAP50 and time. The checkpoint and its ONNX export are
    the models of benchmarks 5 and 6.
    """
    from vision_pipeline.vision.export import export_model
    from vision_pipeline.vision.synthetic import generate_synthetic_dataset
    from vision_pipeline.vision.training import TrainConfig, train

    work_dir = Path(work)
    t0 = time.perf_counter()
    if default_recipe:
        data_yaml = generate_synthetic_dataset(work_dir / "data")
        config = TrainConfig()
    else:
        data_yaml = generate_synthetic_dataset(work_dir / "data", n_train=n_train, n_val=n_val)
        config = TrainConfig(epochs=int(epochs or 3), imgsz=imgsz)
    generate_s = time.perf_counter() - t0
    result = train(data_yaml, work_dir / "train", config)
    t1 = time.perf_counter()
    files = export_model(result.best_path, work_dir / "export", imgsz=config.imgsz, formats=("onnx",))
    export_s = time.perf_counter() - t1
    return {
        "default_recipe": default_recipe, "config": config.to_dict(), "generate_s": generate_s,
        "train_s": result.seconds, "epochs_run": result.epochs_run, "metrics": result.metrics,
        "best": str(result.best_path), "onnx": str(files["onnx"]), "export_s": export_s,
        "class_names": result.class_names, "imgsz": config.imgsz, "data_yaml": str(data_yaml),
    }


def make_images(dest: Path, n: int, seed: int = 1) -> list[Path]:
    """``n`` synthetic 128-px images (another seed than any training set)."""
    from vision_pipeline.vision.synthetic import generate_synthetic_dataset

    generate_synthetic_dataset(dest, n_train=n, n_val=1, imgsz=128, seed=seed)
    return sorted((dest / "images" / "train").glob("*.png"))


# ------------------------------------------------------------------------------------ throughput


def _load_jsonl(path: Path) -> dict[str, list[tuple[int, float, list[float]]]]:
    per_image: dict[str, list[tuple[int, float, list[float]]]] = defaultdict(list)
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            per_image[row["image"]].append((row["class_id"], row["confidence"], row["box_xyxy"]))
    return per_image


def compare_predictions(a_path: Path, b_path: Path, conf: float) -> dict[str, Any]:
    """Detections of two runs over the same images, compared image by image with the export parity rules.

    One implementation serves both: :func:`vision_pipeline.vision.export.compare_detections` (same class,
    IoU >= 0.5, greedy; a detection scoring at least ``conf + 0.02`` must have a partner; matched boxes
    may differ by at most 2 px per coordinate).
    """
    from vision_pipeline.vision.export import Detection, compare_detections

    a, b = _load_jsonl(a_path), _load_jsonl(b_path)
    matched = unmatched = too_far = 0
    max_diff = max_conf_diff = 0.0
    for image in set(a) | set(b):
        side_a = [Detection(c, s, tuple(box)) for c, s, box in a.get(image, [])]
        side_b = [Detection(c, s, tuple(box)) for c, s, box in b.get(image, [])]
        cmp = compare_detections(side_a, side_b, conf=conf, conf_margin=CONF_MARGIN,
                                 box_tolerance_px=BOX_TOLERANCE_PX, where=image)
        matched += cmp.matched
        unmatched += cmp.missing + cmp.class_mismatches
        too_far += cmp.boxes_off
        max_diff = max(max_diff, cmp.max_box_diff_px)
        max_conf_diff = max(max_conf_diff, cmp.max_conf_diff)
    return {"matched": matched, "unmatched": unmatched, "box_over_tolerance": too_far,
            "max_box_diff_px": max_diff, "max_conf_diff": max_conf_diff,
            "equal": unmatched == 0 and too_far == 0,
            "detections_a": sum(map(len, a.values())), "detections_b": sum(map(len, b.values()))}


def throughput(model: dict[str, Any], images: list[Path], work: Path, *, rounds: int, conf: float,
               log: Callable[[str], None]) -> dict[str, Any]:
    """ONNX Runtime vs the PyTorch checkpoint through ``predict_folder`` on the same images, interleaved.

    Three arms per round: ``onnx`` (ONNX Runtime's default threads), ``pt`` (predict_folder's default
    torch threads) and ``pt_all_cores`` (``threads=os.cpu_count()``), so a PyTorch speed that depends on
    its thread setting on a busy machine is visible as such.
    """
    import os

    from vision_pipeline.vision.predict import predict_folder

    all_cores = os.cpu_count() or 1
    paths = {"onnx": model["onnx"], "pt": model["best"], "pt_all_cores": model["best"]}
    threads = {"onnx": None, "pt": None, "pt_all_cores": all_cores}
    stats: dict[str, list[dict[str, Any]]] = {k: [] for k in paths}
    first_jsonl: dict[str, Path] = {}

    def arm(kind: str) -> Callable[[int], float]:
        def go(i: int) -> float:
            out = work / f"{kind}-{i}"
            s = predict_folder(Path(paths[kind]), images, out, imgsz=model["imgsz"], conf=conf,
                               class_names=model["class_names"], max_previews=0, threads=threads[kind])
            stats[kind].append({"images_per_second": s.images_per_second, "latency_ms": s.latency_ms,
                                "detections": s.detections, "backend": s.backend})
            first_jsonl.setdefault(kind, s.jsonl_path)
            return s.images_per_second
        return go

    for kind, path in paths.items():  # untimed warm-up: first-call costs (lazy imports, file cache) hit no arm
        predict_folder(Path(path), images[:5], work / f"warmup-{kind}", imgsz=model["imgsz"], conf=conf,
                       class_names=model["class_names"], max_previews=0, threads=threads[kind])
    got = round_robin({k: arm(k) for k in paths}, rounds, log)
    default = Comparison(got["onnx"], got["pt"])
    best_pt = [max(a, b) for a, b in zip(got["pt"], got["pt_all_cores"])]
    vs_best = Comparison(got["onnx"], best_pt)
    return {"ips": got, "ratio": default.ratio, "spread": default.spread, "describe": default.describe(),
            "ratio_vs_best_pt": vs_best.ratio, "describe_vs_best_pt": vs_best.describe(),
            "stats": stats, "images": len(images),
            "check": compare_predictions(first_jsonl["onnx"], first_jsonl["pt"], conf),
            "onnx_ips": median(got["onnx"]), "pt_ips": median(got["pt"]), "pt_all_cores_ips": median(got["pt_all_cores"]),
            "pt_default_threads": _default_torch_threads(), "all_cores": all_cores,
            "p50_ms": {k: median([s["latency_ms"]["p50"] for s in v]) for k, v in stats.items()}}


def _default_torch_threads() -> int:
    """The torch thread count predict_folder uses with ``threads=None``: ultralytics' ``select_device`` choice."""
    import os

    return max((os.cpu_count() or 1) - 1, 1)


# ---------------------------------------------------------------------------------------- memory


def _rss_kib() -> int:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * (resource.getpagesize() // 1024)


def rss_run(model_path: str, images: list[str], count: int, out_dir: str, *, imgsz: int, conf: float,
            class_names: list[str]) -> dict[str, Any]:
    """``predict_folder`` over ``count`` images (the ``images`` list cycled, handed over lazily).

    Reports this process's peak RSS (``ru_maxrss``) and its RSS after 10 % and after 100 % of the images.
    """
    from vision_pipeline.vision.predict import predict_folder

    samples: dict[str, int] = {}
    marks = {max(1, count // 10): "rss_10pct_kib", count: "rss_end_kib"}

    def feed():
        for i, path in enumerate(itertools.islice(itertools.cycle(images), count), start=1):
            yield path
            if i in marks:
                samples[marks[i]] = _rss_kib()

    rss_before = _rss_kib()
    t0 = time.perf_counter()
    stats = predict_folder(Path(model_path), feed(), Path(out_dir), imgsz=imgsz, conf=conf,
                           class_names=class_names, max_previews=0)
    seconds = time.perf_counter() - t0
    jsonl_bytes = stats.jsonl_path.stat().st_size
    shutil.rmtree(out_dir, ignore_errors=True)
    return {"count": count, "images": stats.images, "detections": stats.detections, "seconds": seconds,
            "images_per_second": stats.images_per_second, "rss_before_kib": rss_before, **samples,
            "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "jsonl_bytes": jsonl_bytes}
