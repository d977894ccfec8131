"""Benchmark 1: the whole asset graph through ``dagster asset materialize`` vs ``bench/plain_pipeline.py``.

Both sides start from the same synthetic dataset folder on disk and do the same machine-learning work
with the same settings (see ``plain_pipeline.py`` for the list):

* Dagster: ``dagster asset materialize -m vision_pipeline.definitions --select '*' -c run_config.yaml`` in a
  throwaway ``DAGSTER_HOME`` (a ``dagster.yaml`` with telemetry off, default executor) and a throwaway
  ``VISION_PIPELINE_HOME`` (offline ClearML, SQLite job rows, local artifact store: the defaults). The run
  config points ``dataset.source`` at the folder, exports ONNX only (the default also writes TorchScript,
  which the plain script would not do), runs inference over the val images without previews.
* Plain: ``python bench/plain_pipeline.py`` with the same data folder and hyper-parameters, which also
  mirrors the ML work of the parity check (PyTorch vs ONNX on the same val images) and of the promotion
  gate (one more validation of ``best.pt``).

Each side is one fresh process, timed from start to exit (interpreter start and imports included). The
Dagster side runs with the executor ``definitions.py`` configures (in-process since the multiprocess
executor's per-step imports were measured to dominate the overhead).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bench.common import PYTHON, REPO_ROOT, Comparison, clean_env, interleave, median, run_process

_STEP_RE = re.compile(r'Finished execution of step "([^"]+)" in ([0-9.]+)(ms|s|m)?((?:[0-9.]+s)?)')


def _seconds(value: str, unit: str | None, rest: str) -> float:
    v = float(value)
    if unit == "ms":
        return v / 1000
    if unit == "m":  # "2m38s"
        return v * 60 + (float(rest[:-1]) if rest else 0.0)
    return v


def step_durations(log_text: str) -> dict[str, float]:
    return {m.group(1): _seconds(m.group(2), m.group(3), m.group(4)) for m in _STEP_RE.finditer(log_text)}


def run_config(data_dir: Path, *, epochs: int, imgsz: int, batch: int, device: str, parity_images: int) -> dict[str, Any]:
    return {
        "ops": {
            "dataset": {"config": {"source": str(data_dir)}},
            "trained_checkpoint": {"config": {"epochs": epochs, "imgsz": imgsz, "batch": batch, "device": device,
                                              "min_map50": 0.0}},
            "exported_model": {"config": {"formats": ["onnx"], "parity_images": parity_images}},
            "inference_outputs": {"config": {"images": str(data_dir / "images" / "val"), "max_previews": 0}},
            "production_model": {"config": {"device": device}},
        }
    }


def _drop_label_caches(data_dir: Path) -> None:
    for cache in (data_dir / "labels").glob("*.cache"):
        cache.unlink()


def run(work: Path, *, n_train: int, n_val: int, epochs: int, imgsz: int, batch: int, device: str,
        parity_images: int, pairs: int, timeout: float, log: Callable[[str], None]) -> dict[str, Any]:
    from vision_pipeline.vision.synthetic import generate_synthetic_dataset

    data_dir = work / "data"
    generate_synthetic_dataset(data_dir, n_train=n_train, n_val=n_val, imgsz=128, seed=0)
    config = run_config(data_dir, epochs=epochs, imgsz=imgsz, batch=batch, device=device, parity_images=parity_images)
    config_path = work / "run_config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    dagster_bin = str(Path(PYTHON).parent / "dagster")
    dagster_runs: list[dict[str, Any]] = []
    plain_runs: list[dict[str, Any]] = []

    def dagster_side(i: int) -> float:
        root = work / f"dagster-{i}"
        home, vp_home = root / "dagster_home", root / "vp_home"
        home.mkdir(parents=True)
        vp_home.mkdir(parents=True)
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        _drop_label_caches(data_dir)
        env = clean_env(DAGSTER_HOME=str(home), VISION_PIPELINE_HOME=str(vp_home))
        res = run_process([dagster_bin, "asset", "materialize", "-m", "vision_pipeline.definitions", "--select", "*",
                           "-c", str(config_path)], env=env, log=root / "materialize.log", timeout=timeout)
        text = res.log.read_text(errors="replace")
        if res.rc != 0 or "RUN_SUCCESS" not in text:
            raise RuntimeError(f"dagster asset materialize failed (exit {res.rc}); log {res.log}:\n{res.tail(20)}")
        steps = step_durations(text)
        dagster_runs.append({"seconds": res.seconds, "steps": steps, "maxrss_kib": res.maxrss_kib})
        shutil.rmtree(vp_home / "work", ignore_errors=True)
        shutil.rmtree(vp_home / "artifacts", ignore_errors=True)
        return res.seconds

    def plain_side(i: int) -> float:
        root = work / f"plain-{i}"
        root.mkdir(parents=True)
        _drop_label_caches(data_dir)
        timings = root / "timings.json"
        res = run_process([PYTHON, str(REPO_ROOT / "bench" / "plain_pipeline.py"), "--data-dir", str(data_dir),
                           "--out", str(root / "out"), "--epochs", str(epochs), "--imgsz", str(imgsz),
                           "--batch", str(batch), "--device", device, "--parity-images", str(parity_images),
                           "--timings", str(timings)],
                          env=clean_env(), log=root / "plain.log", timeout=timeout)
        if res.rc != 0 or not timings.is_file():
            raise RuntimeError(f"plain pipeline failed (exit {res.rc}); log {res.log}:\n{res.tail(20)}")
        plain_runs.append({"seconds": res.seconds, **json.loads(timings.read_text())})
        shutil.rmtree(root / "out", ignore_errors=True)
        return res.seconds

    t0 = time.perf_counter()
    comp: Comparison = interleave(dagster_side, plain_side, pairs, log, ("dagster", "plain"))
    step_names = sorted({k for r in dagster_runs for k in r["steps"]})
    return {
        "ratio": comp.ratio, "spread": comp.spread, "describe": comp.describe(),
        "dagster_s": comp.a, "plain_s": comp.b,
        "dagster_median_s": median(comp.a), "plain_median_s": median(comp.b),
        "overhead_median_s": median([a - b for a, b in zip(comp.a, comp.b)]),
        "dagster_steps_median_s": {k: median([r["steps"].get(k, 0.0) for r in dagster_runs]) for k in step_names},
        "plain_steps_median_s": {k: median([r["timings"][k] for r in plain_runs]) for k in plain_runs[0]["timings"]},
        "plain_map50": [r["mAP50_final"] for r in plain_runs],
        "config": config, "bench_s": time.perf_counter() - t0,
    }
