"""``python -m bench [--quick] [--gpu] [--only 1,5] [--keep]``: run the benchmarks, print the table, write results.json.

Exit status: 0 when every benchmark ran (missed targets included: the table says MISSED), 1 when a
benchmark itself failed (its row says ERROR), 2 for ``--gpu`` without a CUDA device.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    BENCH_DIR, MiB, WORK_ROOT, Figure, Workspace, clean_env, fmt_value, interleave, median, percentile, run_worker,
    skipped,
)

RESULTS = BENCH_DIR / "results.json"
FULL_BUDGET_S, QUICK_BUDGET_S = 15 * 60, 3 * 60


@dataclass
class Ctx:
    quick: bool
    gpu: bool
    ws: Workspace
    started: float = field(default_factory=time.perf_counter)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def group(self) -> str:
        return "gpu" if self.gpu else "cpu"

    @property
    def device(self) -> str:
        return "0" if self.gpu else "cpu"

    def log(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.started:6.0f} s] {text}", flush=True)

    def worker(self, target: str, args: dict[str, Any], name: str, timeout: float = 1800, **env: str) -> dict[str, Any]:
        log = self.ws.path("logs") / f"{name}.log"
        home = self.ws.path("homes", name)
        return run_worker(target, args, log=log, timeout=timeout, env=clean_env(VISION_PIPELINE_HOME=str(home), **env))


# ----------------------------------------------------------------------------------------- 1


def bench_orchestration(ctx: Ctx) -> list[Figure]:
    from bench import pipeline_bench

    setting = dict(n_train=128, n_val=32, epochs=3, imgsz=96, batch=16, parity_images=8)
    label = (f"{setting['n_train']}+{setting['n_val']} synthetic images, {setting['epochs']} epochs at "
             f"{setting['imgsz']} px (reduced, identical on both sides; the default recipe is 320+80 images, 18 epochs)")
    ctx.log(f"1: {label}; 3 interleaved pairs, device {ctx.device}")
    r = pipeline_bench.run(ctx.ws.path("orchestration"), device=ctx.device, pairs=3, timeout=1500, log=ctx.log,
                           **setting)
    ratio = r["ratio"]
    steps = ", ".join(f"{k} {v:.1f}" for k, v in r["dagster_steps_median_s"].items())
    plain_steps = ", ".join(f"{k} {v:.1f}" for k, v in r["plain_steps_median_s"].items())
    detail = (f"{label}. dagster median {r['dagster_median_s']:.1f} s vs plain {r['plain_median_s']:.1f} s, "
              f"overhead {r['overhead_median_s']:.1f} s per run; {r['describe']}. Dagster step times (s): {steps}. "
              f"Plain script (s): {plain_steps}.")
    default = ctx.state.get("default_recipe")
    extra: dict[str, Any] = {k: r[k] for k in ("dagster_s", "plain_s", "overhead_median_s", "dagster_steps_median_s",
                                               "plain_steps_median_s")}
    if default:  # the fixed overhead spread over the default recipe's training time (estimate, not a measurement)
        plain_train = r["plain_steps_median_s"].get("train", 0.0)
        est_plain = r["plain_median_s"] - plain_train + default["train_s"]
        est = (est_plain + r["overhead_median_s"]) / est_plain
        extra["estimated_ratio_default_recipe"] = est
        detail += (f" Estimate for the default recipe (training {default['train_s']:.0f} s measured in benchmark 8, "
                   f"same fixed overhead): ratio ~{est:.2f}.")
    name = "orchestration overhead: dagster asset materialize / plain script (wall)"
    figs = [Figure("1", name, ratio, "x", "<= 1.10", ratio <= 1.10, detail, extra=extra),
            Figure("1b", "orchestration overhead per run (dagster - plain)", r["overhead_median_s"], "s", "-", None,
                   "absolute seconds the graph adds to one run at this setting")]
    return figs


# ----------------------------------------------------------------------------------------- 2


def bench_tracking_overhead(ctx: Ctx) -> list[Figure]:
    from vision_pipeline.vision.synthetic import generate_synthetic_dataset

    if ctx.quick:
        n_train, n_val, epochs, imgsz = 32, 8, 3, 64
    else:
        n_train, n_val, epochs, imgsz = 96, 24, 4, 96
    work = ctx.ws.path("tracking")
    data_yaml = generate_synthetic_dataset(work / "data", n_train=n_train, n_val=n_val, seed=2)
    label = f"{n_train}+{n_val} images at {imgsz} px, {epochs} epochs per run, epochs 2..{epochs} compared"
    ctx.log(f"2: {label}; 3 interleaved pairs (tracked, untracked), one process per run, device {ctx.device}")
    runs: list[dict[str, Any]] = []

    def side(tracked: bool) -> Callable[[int], float]:
        def go(i: int) -> float:
            name = f"tracking-{i}-{'tracked' if tracked else 'untracked'}"
            run = ctx.worker("bench.tracking_bench:training_run",
                             dict(data_yaml=str(data_yaml), out=str(work / name), tracked=tracked, epochs=epochs,
                                  imgsz=imgsz, batch=16, device=ctx.device, clearml_dir=str(work / "clearml")), name)
            runs.append(run)
            return run["median_epoch_s"]
        return go

    # Every run in its own process: ClearML's Task.init patches process-wide hooks that would stay behind.
    interleave(side(True), side(False), 3, ctx.log, ("tracked", "untracked"))
    tracked = [x for x in runs if x["tracked"]]
    plain = [x for x in runs if not x["tracked"]]
    ratios = [t["median_epoch_s"] / p["median_epoch_s"] for t, p in zip(tracked, plain)]
    ratio = median(ratios)
    lo, hi = min(ratios), max(ratios)
    cpu_ratios = [t["median_epoch_cpu_s"] / p["median_epoch_cpu_s"] for t, p in zip(tracked, plain)
                  if t["median_epoch_cpu_s"] and p["median_epoch_cpu_s"]]
    cpu_ratio = median(cpu_ratios) if cpu_ratios else float("nan")
    cb = [c for t in tracked for c in t["callback_s"]]
    epoch_s = median([x["median_epoch_s"] for x in runs])
    tracked_txt = ", ".join(f"{t['median_epoch_s']:.2f}" for t in tracked)
    plain_txt = ", ".join(f"{p['median_epoch_s']:.2f}" for p in plain)
    # The wall-time ratio can only say "<= 1.01" when the pairs agree to better than the margin tested.
    resolvable = hi - lo <= 0.02
    detail = (f"{label}. Wall seconds per epoch, median per run: tracked {tracked_txt}; untracked {plain_txt}; "
              f"pair ratios {', '.join(f'{x:.3f}' for x in ratios)} (spread {lo:.3f}..{hi:.3f}). "
              + ("" if resolvable else
                 f"INCONCLUSIVE: the pairs disagree by {100 * (hi - lo):.0f} % (other processes' load on the 2 shared "
                 "cores), more than the 1 % being tested; 2c (direct accounting) resolves it. "))
    name = "tracking overhead: epoch with ClearML logging / without (wall)"
    fig = Figure("2", name, ratio, "x", "<= 1.01", (ratio <= 1.01) if resolvable else None, detail, group=ctx.group,
                 status="" if resolvable else "INCONCLUSIVE", extra={"ratios": ratios, "cpu_ratios": cpu_ratios, "runs": runs})
    cpu_txt = ", ".join(f"{x:.3f}" for x in cpu_ratios)
    cpu_resolvable = bool(cpu_ratios) and max(cpu_ratios) - min(cpu_ratios) <= 0.02
    # Direct accounting: the callback's time on the training thread plus what tracking adds on other threads
    # (the SDK's reporter/log threads), per epoch, over the epoch time.
    bg = [t["other_threads_cpu_per_epoch_s"] - p["other_threads_cpu_per_epoch_s"] for t, p in zip(tracked, plain)
          if t.get("other_threads_cpu_per_epoch_s") is not None and p.get("other_threads_cpu_per_epoch_s") is not None]
    bg_s = median(bg) if bg else 0.0
    direct_all = (median(cb) + max(bg_s, 0.0)) / epoch_s
    return [fig,
            Figure("2b", "tracking overhead: epoch CPU time with ClearML logging / without", cpu_ratio, "x", "<= 1.01",
                   (cpu_ratio <= 1.01) if cpu_resolvable else None,
                   f"process CPU seconds per epoch (all threads, ClearML's included), pair ratios {cpu_txt}"
                   + ("" if cpu_resolvable else "; INCONCLUSIVE: CPU time moves with contention too (shared caches, "
                      "SMT siblings); 2c is the direct measurement"),
                   group=ctx.group, status="" if cpu_resolvable else "INCONCLUSIVE"),
            Figure("2c", "tracking overhead, direct: logging callback + ClearML threads' CPU / epoch time",
                   direct_all * 100, "%", "<= 1 %", direct_all <= 0.01,
                   f"per epoch: callback (log_metrics 13 scalars + log_text) median {median(cb) * 1000:.2f} ms "
                   f"(max {max(cb) * 1000:.2f} ms over {len(cb)} epochs) on the training thread, plus "
                   f"{bg_s * 1000:.1f} ms CPU more on the other threads than without tracking (pairs: "
                   f"{', '.join(f'{x * 1000:.1f}' for x in bg)} ms; /proc thread times, 10 ms ticks); "
                   f"epoch median {epoch_s:.2f} s", group=ctx.group)]


# ----------------------------------------------------------------------------------------- 3


def _latency_figures(r: dict[str, Any], where: str, bench_id: str) -> list[Figure]:
    ms = lambda xs: [x * 1000 for x in xs]  # noqa: E731
    metric = ms(r["metric_calls_s"])
    single = ms(r["scalar_calls_s"])
    epoch = ms(r["epoch_calls_s"])
    n13 = r["scalars_per_call"]
    per_scalar_wall = sum(r["metric_calls_s"]) / (len(metric) * n13) * 1000
    per_scalar_cpu = r["cpu_s"] / r["n_scalars"] * 1000
    per_scalar_all = (r["loop_wall_s"] + r["close_s"]) / r["n_scalars"] * 1000
    common = (f"{len(metric)} log_metrics calls of {n13} scalars on a real {where} task; task init {r['task_init_s']:.2f} s, "
              f"close/flush {r['close_s'] * 1000:.0f} ms")
    p99 = percentile(metric, 0.99)
    return [
        Figure(f"{bench_id}a", f"metric logging p99 per log_metrics call ({n13} scalars), {where}", p99, "ms", "< 50 ms",
               p99 < 50, f"p50 {percentile(metric, .5):.3f} ms, p90 {percentile(metric, .9):.3f} ms, "
               f"max {max(metric):.2f} ms; {common}"),
        Figure(f"{bench_id}b", f"metric logging amortised per scalar, {where}", per_scalar_wall, "ms", "< 1 ms (goal)",
               per_scalar_wall < 1.0,
               f"caller wall time / scalars; including the close that flushes the events: {per_scalar_all:.4f} ms; "
               f"process CPU (background threads included) {per_scalar_cpu:.4f} ms per scalar"),
        Figure(f"{bench_id}c", f"metric logging per epoch (log_metrics + log_text), {where}", percentile(epoch, 0.99), "ms",
               "< 50 ms", percentile(epoch, 0.99) < 50,
               f"p99 shown; p50 {percentile(epoch, .5):.3f} ms, max {max(epoch):.2f} ms over {len(epoch)} epochs"),
        Figure(f"{bench_id}d", f"single report_scalar p99, {where}", percentile(single, 0.99), "ms", "< 50 ms",
               percentile(single, 0.99) < 50,
               f"p50 {percentile(single, .5):.4f} ms, max {max(single):.2f} ms over {len(single)} calls"),
    ]


def bench_logging_latency(ctx: Ctx) -> list[Figure]:
    import os

    calls = 500 if ctx.quick else 2000
    ctx.log(f"3: {calls} log_metrics calls + {calls} single scalars, offline")
    r = ctx.worker("bench.tracking_bench:logging_latency",
                   dict(cache_dir=str(ctx.ws.path("latency", "clearml")), calls=calls), "logging_latency")
    figs = _latency_figures(r, "offline", "3")
    if os.environ.get("CLEARML_API_HOST") and os.environ.get("CLEARML_OFFLINE_MODE", "").lower() not in ("1", "true", "yes", "on"):
        ctx.log("3: online, against CLEARML_API_HOST")
        env = {k: v for k, v in os.environ.items() if k.startswith("CLEARML_")}
        online = ctx.worker("bench.tracking_bench:logging_latency",
                            dict(cache_dir=str(ctx.ws.path("latency", "clearml-online")), calls=min(calls, 500),
                                 online=True), "logging_latency_online", **env)
        figs += [Figure(f.bench.replace("3", "3o", 1), f.name, f.value, f.unit, f.target, f.met, f.detail)
                 for f in _latency_figures(online, "online", "3")]
    else:
        figs.append(skipped("3o", "metric logging, online", "ms", "< 50 ms",
                            "no ClearML server configured (CLEARML_API_HOST unset or CLEARML_OFFLINE_MODE on)"))
    return figs


# ----------------------------------------------------------------------------------------- 4


def bench_upload(ctx: Ctx) -> list[Figure]:
    from bench import upload_bench

    size, reps = 256 * MiB, (1 if ctx.quick else 3)
    ctx.log(f"4: {size // MiB} MiB file, {reps} uploads per store")
    r = upload_bench.run(ctx.ws.path("upload"), size=size, reps=reps, log=ctx.log)
    (ctx.ws.root / "upload" / "payload.bin").unlink(missing_ok=True)
    local, s3 = r["local_mb_s"], r["s3_mb_s"]
    goal = lambda v: "goal >= 100 MB/s " + ("met" if v >= 100 else "MISSED")  # noqa: E731
    return [
        Figure("4a", "artifact upload, local store (put_file: sha256 + copy + fsync)", local, "MB/s",
               ">= 10 MB/s (goal 100)", local >= 10,
               f"{goal(local)}; median of {reps}, 256 MiB random bytes; the same copy without hashing "
               f"(read+write+fsync) runs at {r['local_raw_copy_mb_s']:.0f} MB/s", extra=r),
        Figure("4b", "artifact upload, S3 (moto on loopback, put_file: hash + multipart + verify)", s3, "MB/s",
               ">= 10 MB/s (goal 100)", s3 >= 10,
               f"{goal(s3)}; median of {reps}, interleaved with raw boto3 upload_file (same TransferConfig, no "
               f"checksums/verification) at {r['s3_raw_mb_s']:.0f} MB/s (store takes {r['s3_store_vs_raw_time']:.2f}x "
               f"its time); one single-request put_object: {r['s3_single_put_mb_s']:.0f} MB/s. moto is an in-memory "
               f"Python server sharing the 2 cores: a real S3/MinIO endpoint behaves differently"),
    ]


# ----------------------------------------------------------------------------------------- 8 (+ the model of 5, 6)


def prepare_model(ctx: Ctx) -> dict[str, Any]:
    if "model" in ctx.state:
        return ctx.state["model"]
    ctx.log("5/6: training a small model for the inference benchmarks (3 epochs, 64+16 images, 64 px) + ONNX export")
    m = ctx.worker("bench.inference_bench:train_and_export",
                   dict(work=str(ctx.ws.path("model")), n_train=64, n_val=16, imgsz=64, epochs=3, default_recipe=False),
                   "small_model")
    m["label"] = f"small model (3 epochs on 64 images, 64 px, mAP50 {m['metrics']['mAP50']:.3f})"
    ctx.state["model"] = m
    return m


def bench_demo_quality(ctx: Ctx) -> list[Figure]:
    ctx.log("8: the default recipe (TrainConfig(), generate_synthetic_dataset defaults: 320+80 images, 18 epochs)")
    m = ctx.worker("bench.inference_bench:train_and_export",
                   dict(work=str(ctx.ws.path("default_recipe")), n_train=320, n_val=80, imgsz=96, epochs=None,
                        default_recipe=True), "default_recipe", timeout=2400)
    m["label"] = f"default-recipe model (mAP50 {m['metrics']['mAP50']:.3f})"
    ctx.state["default_recipe"] = m
    ctx.state["model"] = m
    map50 = m["metrics"]["mAP50"]
    return [
        Figure("8", "demo quality: default recipe mAP50 on synthetic val", map50, "", ">= 0.8 (the recipe's target)",
               map50 >= 0.8, f"mAP50-95 {m['metrics']['mAP50-95']:.3f}, P {m['metrics']['precision']:.3f}, "
               f"R {m['metrics']['recall']:.3f} after {m['epochs_run']} epochs (recipe doc: ~0.95-0.975)", extra=m),
        Figure("8b", "demo quality: default recipe training time", m["train_s"], "s", "<= 180 s on 2 cores",
               m["train_s"] <= 180.0,
               f"train() wall time incl. final validation; dataset generation {m['generate_s']:.1f} s, "
               f"ONNX export {m['export_s']:.1f} s; torch threads: ultralytics' default (cpu_count - 1)"),
    ]


# ----------------------------------------------------------------------------------------- 5


def _images(ctx: Ctx, n: int) -> list[Path]:
    from bench.inference_bench import make_images

    have = ctx.state.get("images")
    if have and len(have) >= n:
        return have[:n]
    ctx.log(f"5/6: generating {n} synthetic 128-px images")
    images = make_images(ctx.ws.path("images"), n)
    ctx.state["images"] = images
    return images


def bench_inference_throughput(ctx: Ctx) -> list[Figure]:
    import os

    from bench import inference_bench
    from bench.inference_bench import _default_torch_threads

    model = prepare_model(ctx)
    n = 50 if ctx.quick else 150
    images = _images(ctx, 100 if ctx.quick else 1000)[:n]
    dflt, cores = _default_torch_threads(), os.cpu_count() or 1
    ctx.log(f"5: predict_folder over {n} images: ONNX Runtime, PyTorch ({dflt} thread(s), predict_folder's default), "
            f"PyTorch ({cores} threads); 3 interleaved rounds ({model['label']})")
    r = inference_bench.throughput(model, images, ctx.ws.path("throughput"), rounds=3, conf=0.25, log=ctx.log)
    c = r["check"]
    equal = c["equal"]
    weak = "" if c["matched"] >= 20 else f" (weak check: only {c['matched']} detections to compare)"
    p50 = r["p50_ms"]
    check = (f"Outputs ONNX vs PyTorch {'EQUAL' if equal else 'DIFFER'} within 2 px: {c['matched']} matched, "
             f"{c['unmatched']} unmatched, max box diff {c['max_box_diff_px']:.3f} px, max conf diff "
             f"{c['max_conf_diff']:.4f}{weak}.")
    detail = (f"{n} images, {model['label']}, imgsz {model['imgsz']}; end to end (decode + predict + JSONL): ONNX "
              f"{r['onnx_ips']:.1f} img/s, PyTorch {r['pt_ips']:.1f} img/s with predict_folder's default {dflt} torch "
              f"thread(s), {r['pt_all_cores_ips']:.1f} img/s with {cores}; model-call p50 {p50['onnx']:.2f} / "
              f"{p50['pt']:.2f} / {p50['pt_all_cores']:.2f} ms; {r['describe']}. {check}")
    if r["pt_all_cores_ips"] > 1.5 * r["pt_ips"] or r["pt_ips"] > 1.5 * r["pt_all_cores_ips"]:
        detail += (f" NOTE: PyTorch's speed depends {max(r['pt_ips'], r['pt_all_cores_ips']) / max(min(r['pt_ips'], r['pt_all_cores_ips']), 1e-9):.1f}x "
                   "on its thread count here (a thread pool larger than the free cores collapses when other processes "
                   "use them); 5b compares with the faster setting.")
    vs_best = r["ratio_vs_best_pt"]
    return [Figure("5", "inference throughput: ONNX Runtime / PyTorch checkpoint (predict_folder defaults)", r["ratio"],
                   "x", ">= 1.5 (goal), outputs equal", r["ratio"] >= 1.5 and equal, detail, extra=r),
            Figure("5b", "inference throughput: ONNX Runtime / PyTorch at its faster thread setting here", vs_best, "x",
                   ">= 1.5 (goal)", vs_best >= 1.5,
                   f"PyTorch per round: the faster of {dflt} and {cores} threads; {r['describe_vs_best_pt']}")]


# ----------------------------------------------------------------------------------------- 6


def bench_inference_memory(ctx: Ctx) -> list[Figure]:
    model = prepare_model(ctx)
    small, big = (100, 1000) if ctx.quick else (1000, 10000)
    images = [str(p) for p in _images(ctx, 100 if ctx.quick else 1000)]
    out: dict[int, dict[str, Any]] = {}
    for count in (small, big):
        ctx.log(f"6: predict_folder (ONNX) over {count:,} images in a fresh process ({len(images)} files cycled)")
        out[count] = ctx.worker("bench.inference_bench:rss_run",
                                dict(model_path=model["onnx"], images=images, count=count,
                                     out_dir=str(ctx.ws.root / f"rss-{count}"), imgsz=model["imgsz"], conf=0.25,
                                     class_names=model["class_names"]), f"rss_{count}")
    a, b = out[small], out[big]
    mib = lambda kib: kib / 1024  # noqa: E731
    growth = b["peak_rss_kib"] / a["peak_rss_kib"]
    within = (b["rss_end_kib"] - b["rss_10pct_kib"]) / 1024
    return [
        Figure("6a", f"inference peak RSS over {small:,} images", mib(a["peak_rss_kib"]), "MiB", "-", None,
               f"RSS after 10 % {mib(a['rss_10pct_kib']):.0f} MiB, at the end {mib(a['rss_end_kib']):.0f} MiB; "
               f"{a['images_per_second']:.0f} img/s"),
        Figure("6b", f"inference peak RSS over {big:,} images", mib(b["peak_rss_kib"]), "MiB", "-", None,
               f"RSS after 10 % {mib(b['rss_10pct_kib']):.0f} MiB, at the end {mib(b['rss_end_kib']):.0f} MiB "
               f"(+{within:.1f} MiB over the last 90 %); {b['images_per_second']:.0f} img/s, {b['seconds']:.0f} s"),
        Figure("6", f"inference memory: peak RSS {big:,} / {small:,} images (flat = streaming)", growth, "x",
               "<= 1.05 (flat)", growth <= 1.05,
               f"{mib(a['peak_rss_kib']):.0f} MiB vs {mib(b['peak_rss_kib']):.0f} MiB; ONNX model through predict_folder, "
               f"{len(images)} image files cycled as a lazy iterable", extra={"runs": {str(k): v for k, v in out.items()}}),
    ]


# ----------------------------------------------------------------------------------------- 7


def bench_sensor(ctx: Ctx) -> list[Figure]:
    n = 100_000
    ctx.log(f"7: sensor tick over {n:,} files (building the folder first)")
    r = ctx.worker("bench.sensor_bench:sensor_ticks", dict(n_files=n, tmpdir=str(ctx.ws.path("sensor")), new_files=100),
                   "sensor")
    idle, new = r["idle_tick_s_median"] * 1000, r["new_files_tick_s_median"] * 1000
    sensor_idle = r.get("sensor_idle_tick_s_median")
    sensor_idle = None if sensor_idle is None else sensor_idle * 1000
    return [
        Figure("7a", f"sensor tick, nothing new, {n:,} files", idle, "ms", "< 1000 ms (goal: well under)", idle < 1000,
               f"median of 5 (max {r['idle_tick_s_max'] * 1000:.3f} ms); {r['directories']} folders stat'ed, cursor "
               f"{r['cursor_bytes']} bytes; first (full) scan {r['first_scan_s']:.2f} s; folder built in "
               f"{r['build_folder_s']:.0f} s", extra=r),
        Figure("7b", f"sensor tick, 100 new files, {n:,} files", new, "ms", "< 1000 ms (goal: well under)", new < 1000,
               f"{r['new_files_dirs_rescanned']} folders re-listed ({r['new_files_files_listed']:,} files stat'ed); "
               f"median of 3; one new file (in images/val): {r['one_new_file_tick_s'] * 1000:.0f} ms"),
        Figure("7c", "sensor tick through the Dagster sensor (idle, cursor parse + SkipReason)", sensor_idle, "ms",
               "< 1000 ms", None if sensor_idle is None else sensor_idle < 1000, f"cursor {r.get('sensor_cursor_bytes')} bytes"),
    ]


# ----------------------------------------------------------------------------------------- 9


def bench_mlflow(ctx: Ctx) -> list[Figure]:
    runs, metrics, steps = (20, 5, 1000) if ctx.quick else (100, 5, 1000)
    workdir = WORK_ROOT / "mlflow"  # the generated MLflow database is cached here (slow to create)
    ctx.log(f"9: MLflow import {runs} runs x {metrics} metrics x {steps} steps "
            f"({'cached' if (workdir / f'mlflow-{runs}x{metrics}x{steps}.db.complete').exists() else 'creating'} MLflow database)")
    r = ctx.worker("bench.sensor_bench:mlflow_import", dict(n_runs=runs, n_metrics=metrics, n_steps=steps,
                                                            workdir=str(workdir)), "mlflow_import", timeout=2400)
    value = r["import_vs_read_twice"]
    size = f"{runs} runs x {metrics} metrics x {steps} steps = {r['points']:,} points"
    met = bool(r.get("passed")) and "error" not in r
    if ctx.quick and "error" not in r:
        met = None  # per-run fixed costs weigh differently at 20 runs: the verdict belongs to the 100-run figure
    detail = (f"{size}{' (QUICK: reduced size, no verdict; the figure is 100 runs)' if ctx.quick else ''}: import {r['import_s']:.1f} s "
              f"({r['points_per_s'] or 0:,} points/s) vs MLflow client reading them back twice {r['mlflow_read_twice_s']:.1f} s "
              f"(search_runs + get_metric_history per run and metric); bulk read {r['bulk_read_s']:.1f} s; "
              f"imported {r['imported']} runs, {r['failed']} failed"
              + (f"; CPU seconds: import {r['import_cpu_s']:.1f} vs read twice {r['mlflow_read_twice_cpu_s']:.1f}"
                 if "import_cpu_s" in r and "mlflow_read_twice_cpu_s" in r else "")
              + (f"; ERROR {r['error']}" if "error" in r else ""))
    return [Figure("9", "MLflow import time / MLflow reading the runs back twice", value, "x", "< 1.0", met, detail,
                   extra=r),
            Figure("9b", "MLflow import time", r["import_s"], "s", "-", None, size)]


# ----------------------------------------------------------------------------------------- driver

# id, title, function, in --quick, in --gpu, in the default (CPU) run
BENCHES: list[tuple[str, str, Callable[[Ctx], list[Figure]], bool, bool]] = [
    ("7", "sensor tick", bench_sensor, True, False),
    ("3", "metric logging latency", bench_logging_latency, True, False),
    ("2", "tracking overhead", bench_tracking_overhead, True, True),
    ("4", "artifact upload", bench_upload, True, False),
    ("9", "MLflow import", bench_mlflow, True, False),
    ("8", "demo quality", bench_demo_quality, False, False),
    ("5", "inference throughput", bench_inference_throughput, True, False),
    ("6", "inference memory", bench_inference_memory, True, False),
    ("1", "orchestration overhead", bench_orchestration, False, True),
]
_SKIP_TEXT = {
    "1": ("orchestration overhead: dagster asset materialize / plain script", "x", "<= 1.10"),
    "8": ("demo quality: default recipe mAP50 on synthetic val", "", ">= 0.5"),
}


def _table(figures: list[Figure]) -> str:
    rows = [("#", "figure", "value", "target", "result")]
    for f in figures:
        name = f.name + (" [gpu]" if f.group == "gpu" else "")
        rows.append((f.bench, name, fmt_value(f.value, f.unit), f.target, f.verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    widths[1] = min(widths[1], 78)
    lines = []
    for i, r in enumerate(rows):
        cells = [r[0].ljust(widths[0]), (r[1] if len(r[1]) <= widths[1] else r[1][: widths[1] - 1] + "…").ljust(widths[1]),
                 r[2].rjust(widths[2]), r[3].ljust(widths[3]), r[4]]
        lines.append("  ".join(cells))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _write_results(figures: list[Figure], mode: str) -> None:
    """This run's entries replace those of the same group (cpu/gpu); entries of the other group stay, and so
    does an earlier measurement of a figure this run did not measure (skipped, or not in ``--only``) — each
    entry carries its own ``mode`` and ``measured_at``."""
    previous: list[dict[str, Any]] = []
    try:
        loaded = json.loads(RESULTS.read_text())
        previous = [e for e in loaded if isinstance(e, dict)] if isinstance(loaded, list) else []
    except (OSError, ValueError):
        pass
    new = [f.to_json(mode) for f in figures]
    for entry in new:
        entry["name"] = entry["name"] + (" [gpu]" if entry["group"] == "gpu" else "")
    group = figures[0].group if figures else "cpu"
    measured = {e["bench"] for e in new if e["status"] != "SKIPPED"}
    kept = [e for e in previous if e.get("group") != group or e.get("bench") not in measured]
    kept_ids = {(e.get("group"), e.get("bench")) for e in kept if e.get("status") != "SKIPPED"}
    kept = [e for e in kept if not (e.get("status") == "SKIPPED" and e.get("group") == group)]
    merged = kept + [e for e in new if e["status"] != "SKIPPED" or (e["group"], e["bench"]) not in kept_ids]
    merged.sort(key=lambda e: (e.get("group", ""), _order(str(e.get("bench", "")))))
    RESULTS.write_text(json.dumps(merged, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def _order(bench_id: str) -> tuple[int, str]:
    digits = "".join(c for c in bench_id if c.isdigit())
    return (int(digits) if digits else 0, bench_id)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller variants, < 3 min; skips benchmarks 1 and 8")
    ap.add_argument("--gpu", action="store_true", help="benchmarks 1 and 2 with training on CUDA device 0")
    ap.add_argument("--only", default="", help="comma-separated benchmark numbers, e.g. 1,5")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder under bench/work/")
    args = ap.parse_args(argv)

    if args.gpu:
        import torch

        if not torch.cuda.is_available():
            print("--gpu: torch.cuda.is_available() is False on this machine (no CUDA device or driver); "
                  "nothing was run. Run `make bench GPU=1` on a machine with a GPU.", file=sys.stderr)
            return 2
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    mode = "gpu" if args.gpu else ("quick" if args.quick else "full")
    ctx = Ctx(quick=args.quick, gpu=args.gpu, ws=Workspace(keep=args.keep))
    budget = QUICK_BUDGET_S if args.quick else FULL_BUDGET_S
    load_start = "/".join(f"{x:.1f}" for x in os.getloadavg())
    ctx.log(f"make bench ({mode}); scratch {ctx.ws.root}; load average {load_start} on {os.cpu_count()} cores")
    figures: list[Figure] = []
    errors = 0
    bench_seconds: dict[str, float] = {}
    try:
        for bench_id, title, fn, in_quick, in_gpu in BENCHES:
            if only and bench_id not in only:
                continue
            if args.gpu and not in_gpu:
                continue
            if args.quick and not in_quick:
                name, unit, target = _SKIP_TEXT[bench_id]
                figures.append(skipped(bench_id, name, unit, target,
                                       "skipped in --quick (needs minutes of training); run `make bench`"))
                continue
            t0 = time.perf_counter()
            try:
                got = fn(ctx)
                for f in got:
                    f.group = ctx.group
                figures.extend(got)
            except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
                errors += 1
                traceback.print_exc()
                figures.append(Figure(bench_id, title, None, "", "-", None, f"{type(exc).__name__}: {exc}"[:2000],
                                      group=ctx.group, status="ERROR"))
            bench_seconds[bench_id] = time.perf_counter() - t0
            ctx.log(f"{bench_id} ({title}) took {bench_seconds[bench_id]:.0f} s")
    finally:
        ctx.ws.cleanup()
    total = time.perf_counter() - ctx.started
    timing = ", ".join(f"{k}: {v:.0f} s" for k, v in bench_seconds.items())
    partial = " (partial run: --only)" if only else ""
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    figures.append(Figure("0", f"bench wall time{partial}", total, "s", f"< {budget} s ({mode})",
                          None if only else total < budget,
                          f"per benchmark: {timing}; load average at the start {load_start}, at the end {load} on "
                          f"{os.cpu_count()} cores (other processes' load stretches every wall time)", group=ctx.group))
    figures.sort(key=lambda f: _order(f.bench))
    _write_results(figures, mode)

    print()
    print(_table(figures))
    print()
    for f in figures:
        if f.detail:
            print(f"[{f.bench}] {f.verdict}: {f.detail}")
    missed = [f for f in figures if f.verdict == "MISSED"]
    print()
    if missed:
        print("MISSED targets: " + "; ".join(f"{f.bench} {f.name} = {fmt_value(f.value, f.unit)} (target {f.target})"
                                             for f in missed))
        print("What dominates each and what would remove it: docs/performance.md")
    else:
        print("All measured targets met.")
    if errors:
        print(f"{errors} benchmark(s) failed to run (ERROR rows above).")
    print(f"results: {RESULTS.relative_to(BENCH_DIR.parent)}; bench took {total:.0f} s")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
