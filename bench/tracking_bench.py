"""Benchmarks 2 and 3: what ClearML tracking costs a training epoch, and one metric call.

Both functions run inside ``bench._worker`` (a fresh process), never in the bench process itself.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any


def _tracker(cache_dir: str, online: bool):
    from vision_pipeline.tracking.clearml_session import ClearMLConfig, ClearMLTracker

    if online:
        env = os.environ
        return ClearMLTracker(ClearMLConfig(
            api_host=env.get("CLEARML_API_HOST"), web_host=env.get("CLEARML_WEB_HOST"),
            files_host=env.get("CLEARML_FILES_HOST"), access_key=env.get("CLEARML_API_ACCESS_KEY"),
            secret_key=env.get("CLEARML_API_SECRET_KEY"), offline_mode=False, cache_dir=Path(cache_dir),
        ))
    return ClearMLTracker(ClearMLConfig(offline_mode=True, cache_dir=Path(cache_dir)))


def _other_threads_cpu_s() -> float:
    """CPU seconds (user + system) of every live thread of this process except the main one.

    The SDK's reporter and log threads run there; torch's and ultralytics' helper threads too, but those run
    in both arms of the comparison, so the difference between the arms is what tracking adds.
    """
    import threading

    main = threading.main_thread().native_id
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for task in os.listdir("/proc/self/task"):
        if int(task) == main:
            continue
        try:
            with open(f"/proc/self/task/{task}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / tick


def training_run(data_yaml: str, out: str, *, tracked: bool, epochs: int, imgsz: int, batch: int,
                 device: str, clearml_dir: str) -> dict[str, Any]:
    """One training run for benchmark 2, in a fresh process (``bench._worker``): with ClearML logging or without.

    Tracked: what the ``trained_checkpoint`` asset logs after every epoch (``log_metrics`` with the 13 epoch
    scalars and ``log_text`` with the progress line) into a real offline ClearML task. Untracked: the
    callback only records the epoch time (a list append, i.e. ``on_epoch=None`` in cost) and ClearML is never
    imported — ``Task.init`` patches process-wide hooks (its import hook among them), so a run without
    tracking must not share a process with one that had it. Both record, at every epoch end, the process CPU
    time and the CPU time of the threads other than the main one. ``EpochReport.seconds`` of epoch k spans
    from the end of epoch k-1's validation to the end of epoch k's, so it includes the logging callback of
    epoch k-1: epochs 2..N are compared, epoch 1 (data loader start-up) is not.
    """
    from vision_pipeline.vision.training import TrainConfig, train

    config = TrainConfig(epochs=epochs, imgsz=imgsz, batch=batch, device=device)
    seconds: list[float] = []
    cpu_marks: list[float] = []  # process CPU time (all threads) at every epoch end
    bg_marks: list[float] = []  # CPU time of the threads other than the main one, at every epoch end
    callback_s: list[float] = []
    t0 = time.perf_counter()

    def mark(report) -> None:
        cpu_marks.append(time.process_time())
        bg_marks.append(_other_threads_cpu_s())
        seconds.append(report.seconds)

    if tracked:
        tracker = _tracker(clearml_dir, online=False)
        with tracker.task("bench tracking overhead", "training") as task:
            task.connect(config.to_dict(), name="train")

            def on_epoch(report) -> None:
                mark(report)
                c0 = time.perf_counter()
                task.log_metrics(report.metrics, report.epoch)
                task.log_text(report.line())
                callback_s.append(time.perf_counter() - c0)

            train(Path(data_yaml), Path(out), config, on_epoch=on_epoch)
    else:
        train(Path(data_yaml), Path(out), config, on_epoch=mark)
    per_epoch = seconds[1:] or seconds
    cpu = [b - a for a, b in zip(cpu_marks, cpu_marks[1:])]  # epochs 2..N, each with the previous callback
    return {"tracked": tracked, "epoch_s": seconds, "median_epoch_s": statistics.median(per_epoch),
            "epoch_cpu_s": cpu, "median_epoch_cpu_s": statistics.median(cpu) if cpu else None,
            "other_threads_cpu_per_epoch_s": (bg_marks[-1] - bg_marks[0]) / (len(bg_marks) - 1)
            if len(bg_marks) > 1 else None,
            "callback_s": callback_s, "wall_s": time.perf_counter() - t0}


def logging_latency(cache_dir: str, *, calls: int, online: bool = False) -> dict[str, Any]:
    """Time ``TrackedTask.log_metrics`` (13 scalars, one epoch's worth), single ``log_scalar`` calls and
    the per-epoch logging of the training asset (``log_metrics`` + ``log_text``), on a real task.

    ``cpu_s`` is this process's CPU time over the logging loops plus closing the task (which flushes the
    events), so work the SDK defers to its background threads is counted too.
    """
    from vision_pipeline.vision.training import EPOCH_METRIC_KEYS

    tracker = _tracker(cache_dir, online)
    metric_calls: list[float] = []
    scalar_calls: list[float] = []
    epoch_calls: list[float] = []
    t_init = time.perf_counter()
    task_cm = tracker.task("bench logging latency", "training")
    task = task_cm.__enter__()
    init_s = time.perf_counter() - t_init
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    try:
        for warm in range(5):
            task.log_metrics({k: 0.0 for k in EPOCH_METRIC_KEYS}, 10_000_000 + warm)
        for i in range(calls):
            metrics = {k: 1.0 / (i + 1) + j for j, k in enumerate(EPOCH_METRIC_KEYS)}
            t = time.perf_counter()
            task.log_metrics(metrics, i)
            metric_calls.append(time.perf_counter() - t)
        for i in range(calls):
            t = time.perf_counter()
            task.log_scalar("single", "value", float(i), i)
            scalar_calls.append(time.perf_counter() - t)
        line = "epoch 1/18 box_loss 1.234 cls_loss 2.345 mAP50 0.500 mAP50-95 0.300 P 0.600 R 0.500 lr 0.002"
        for i in range(min(calls, 200)):
            metrics = {k: 2.0 / (i + 1) + j for j, k in enumerate(EPOCH_METRIC_KEYS)}
            t = time.perf_counter()
            task.log_metrics(metrics, 100_000 + i)
            task.log_text(line)
            epoch_calls.append(time.perf_counter() - t)
        loop_wall = time.perf_counter() - wall0
    finally:
        t_close = time.perf_counter()
        task_cm.__exit__(None, None, None)
        close_s = time.perf_counter() - t_close
    cpu_s = time.process_time() - cpu0
    n_scalars = len(EPOCH_METRIC_KEYS) * (5 + calls + len(epoch_calls)) + calls
    return {
        "online": online, "calls": calls, "scalars_per_call": len(EPOCH_METRIC_KEYS),
        "metric_calls_s": metric_calls, "scalar_calls_s": scalar_calls, "epoch_calls_s": epoch_calls,
        "task_init_s": init_s, "close_s": close_s, "loop_wall_s": loop_wall, "cpu_s": cpu_s, "n_scalars": n_scalars,
    }
