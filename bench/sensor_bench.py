"""Benchmark 7: the retraining sensor's tick over a watched folder of 100,000 files (runs in ``bench._worker``)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any


def sensor_ticks(n_files: int, tmpdir: str, *, new_files: int = 100, repeats: int = 5) -> dict[str, Any]:
    """``watch.bench_sensor_tick`` (idle tick, one new file, the idle tick through the Dagster sensor), then
    a tick after ``new_files`` new files (half images, half labels, in the big ``train`` folders)."""
    from vision_pipeline.watch import DEFAULT_SETTLE_S, bench_sensor_tick, make_file_tree, scan

    tmp = Path(tmpdir)
    out: dict[str, Any] = dict(bench_sensor_tick(n_files, tmp, repeats=repeats))
    folder = tmp / f"watch-bench-{n_files}"
    if not (folder / "data.yaml").is_file():  # the helper's folder layout changed: build our own
        folder = make_file_tree(tmp / "sensor-tree", n_files)
    cursor = scan(folder, None, settle_s=DEFAULT_SETTLE_S, full_scan_s=0).cursor
    idle = scan(folder, cursor, settle_s=DEFAULT_SETTLE_S, full_scan_s=0)
    past = time.time() - 3600
    t0 = time.perf_counter()
    for i in range(new_files):
        kind, suffix = (("images", ".jpg"), ("labels", ".txt"))[i % 2]
        path = folder / kind / "train" / f"new-{i // 2:05d}{suffix}"
        path.write_bytes(b"")
        os.utime(path, (past, past))  # settled: the tick reports the change instead of "still being written"
    write_s = time.perf_counter() - t0
    ticks = []
    for _ in range(3):  # the same change seen from the same cursor: 3 samples of the same tick
        changed = scan(folder, cursor, settle_s=DEFAULT_SETTLE_S, full_scan_s=0)
        assert changed.changed, changed.describe()
        ticks.append(changed.seconds)
    ticks.sort()
    out.update({
        "idle_tick_own_s": idle.seconds,
        "new_files": new_files, "new_files_write_s": write_s,
        "new_files_tick_s_median": ticks[1], "new_files_tick_s_max": ticks[-1],
        "new_files_dirs_rescanned": changed.dirs_rescanned, "new_files_files_listed": changed.files_listed,
        "new_files_describe": changed.describe(),
    })
    shutil.rmtree(folder, ignore_errors=True)
    return out


def mlflow_import(n_runs: int, n_metrics: int, n_steps: int, workdir: str) -> dict[str, Any]:
    """``migration.benchmark_import`` (benchmark 9); the MLflow database is cached in ``workdir``."""
    from vision_pipeline.migration.mlflow_import import benchmark_import

    Path(workdir).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = dict(benchmark_import(n_runs, n_metrics, n_steps, Path(workdir).resolve()))
    result["call_s"] = time.perf_counter() - t0
    return result
