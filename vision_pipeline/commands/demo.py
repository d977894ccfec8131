"""`vision-pipeline demo`: the whole pipeline on embedded defaults, then a summary of where everything is."""

from __future__ import annotations

import argparse
import time

from vision_pipeline import settings
from vision_pipeline.instance import get_instance

ASSETS = ("dataset", "trained_checkpoint", "exported_model", "inference_outputs")
PROMOTION = "production_model"
RECIPE_MIN_MAP50 = 0.8
RECIPE_MAX_SECONDS = 180.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs (quick smoke runs)")


def run(args: argparse.Namespace) -> int:
    from vision_pipeline.definitions import defs

    instance = get_instance()
    run_config = {}
    if args.epochs:
        run_config = {"ops": {"trained_checkpoint": {"config": {"epochs": args.epochs}}}}
    started = time.monotonic()
    job = defs.resolve_job_def("retrain_job")
    result = job.execute_in_process(instance=instance, run_config=run_config or None, raise_on_error=False)
    wall = time.monotonic() - started
    print(summary(instance, result.run_id, wall, result.get_asset_check_evaluations()))
    return 0 if result.success else 1


def summary(instance, run_id: str, wall_seconds: float, checks=()) -> str:
    import dagster as dg

    from vision_pipeline.records.store import JobStore, redact_url

    lines = ["", "=" * 78, f"vision_pipeline demo — run {run_id} — {wall_seconds:.0f} s wall", "=" * 78]
    metadata: dict[str, dict] = {}
    for key in ASSETS:
        event = instance.get_latest_materialization_event(dg.AssetKey(key))
        if event is None or event.run_id != run_id:
            lines.append(f"{key:<20} not materialised in this run")
            continue
        md = {k: v.value for k, v in event.asset_materialization.metadata.items()}
        metadata[key] = md
        lines.append(f"{key:<20} job {md['job_kind']} #{md['job_id']}  ClearML {md['clearml_task_id']}")
        lines.append(f"{'':<20} {md['clearml_task_url']}")
    for check in checks:
        lines.append(f"check {check.asset_key.to_user_string()}.{check.check_name}: {'passed' if check.passed else 'FAILED'}")
    train = metadata.get("trained_checkpoint")
    if train:
        ok = train["mAP50"] >= RECIPE_MIN_MAP50 and train["train_seconds"] <= RECIPE_MAX_SECONDS
        lines += [
            "",
            f"training            mAP50 {train['mAP50']:.3f}  mAP50-95 {train['mAP50-95']:.3f}  "
            f"P {train['precision']:.3f}  R {train['recall']:.3f}",
            f"                    {train['epochs_run']} epochs in {train['train_seconds']:.0f} s "
            f"(recipe target: mAP50 >= {RECIPE_MIN_MAP50} within {RECIPE_MAX_SECONDS:.0f} s: {'MET' if ok else 'MISSED'})",
        ]
    export = metadata.get("exported_model")
    if export:
        lines.append(f"export parity       max box diff {export['parity_max_box_diff_px']:.3f} px "
                     f"(tolerance {export['parity_box_tolerance_px']}), passed={export['parity_passed']}")
    infer = metadata.get("inference_outputs")
    if infer:
        lines.append(f"inference           {infer['images']} images, {infer['detections']} detections, "
                     f"p50 {infer['latency_ms_p50']:.1f} ms, {infer['images_per_second']:.1f} img/s")
        lines.append(f"                    predictions: {infer['predictions']}")
    event = instance.get_latest_materialization_event(dg.AssetKey(PROMOTION))
    if event is not None and event.run_id == run_id:
        md = {k: v.value for k, v in event.asset_materialization.metadata.items()}
        lines.append(f"promotion           training job #{md['candidate_training_job_id']}: {md['decision']} "
                     f"— production is training job #{md['production_training_job_id']} since {md['production_since'][:19]}")
        lines.append(f"                    {str(md['reason']).splitlines()[0][:100]}")
    store = JobStore(settings.database_url())
    lines += ["", "job rows:"]
    for row in store.list_jobs(limit=200):
        if row["dagster_run_id"] == run_id:
            lines.append(f"  {row['kind']:<10} #{row['id']:<4} {row['status']:<10} {row['clearml_task_id']}")
    lines += [
        "",
        f"project home        {settings.home()}",
        f"  artifacts         {settings.artifacts_dir()}",
        f"  clearml sessions  {settings.clearml_dir() / 'offline'}",
        f"  job records       {redact_url(settings.database_url())}",
        f"  dagster instance  {instance.root_directory}",
        "next: `make dev` opens the Dagster UI on this instance; `vision-pipeline jobs list` shows the rows.",
    ]
    return "\n".join(lines)
