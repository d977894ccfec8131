"""Stage 5 — `production_model`: the promotion gate (see ``vision_pipeline.promotion`` for the rules).

It runs after `trained_checkpoint` and `exported_model` — so, inside one run, only once their blocking
checks (`map50_quality_gate`, `export_parity`) have passed — and checks that again from the event log
when it is materialised on its own. Its value is a pointer: which training job's model is production.
A rejected model does not fail the run: the materialisation says "rejected" and why, the
`promotion_gate` check shows it as a warning, and production stays what it was.
"""


from pathlib import Path
from typing import Any, Optional

import dagster as dg
from pydantic import Field
from sqlalchemy import select

from vision_pipeline import settings
from vision_pipeline.defs._common import upstream
from vision_pipeline.defs.resources import ArtifactStorageResource, ClearMLResource, JobRecordsResource
from vision_pipeline.defs.training import training_fingerprint
from vision_pipeline.promotion import (
    PROMOTED,
    Candidate,
    PromotionError,
    PromotionRecord,
    promote,
    promotion_tolerance,
    publish_decision,
)
from vision_pipeline.records.errors import RecordsError
from vision_pipeline.records.models import ExportJob
from vision_pipeline.storage import StorageError, checkpoint_key
from vision_pipeline.vision.errors import VisionInputError
from vision_pipeline.vision.evaluate import IncompatibleModelError, evaluate_map50

# The checks that must have passed on the latest materialisation of each upstream asset.
REQUIRED_CHECKS = (("trained_checkpoint", "map50_quality_gate"), ("exported_model", "export_parity"))


class PromotionConfig(dg.Config):
    tolerance: Optional[float] = Field(
        default=None, ge=0.0, le=1.0,
        description="Largest allowed mAP50 regression against production (absolute). "
        "Empty: VISION_PIPELINE_PROMOTION_TOLERANCE, default 0.02.",
    )
    eval_batch: int = Field(default=16, ge=1, description="Batch size of the two validation runs")
    device: str = Field(default="cpu", description="Device of the two validation runs ('cpu', '0', ...)")


def require_checks_passed(instance: dg.DagsterInstance) -> None:
    """Raise ``dg.Failure`` unless each required check passed on its asset's latest materialisation."""
    for asset, check_name in REQUIRED_CHECKS:
        key = dg.AssetCheckKey(dg.AssetKey(asset), check_name)
        record = instance.get_latest_asset_check_evaluation_record(key)
        evaluation = record.evaluation if record is not None else None
        latest = instance.fetch_materializations(dg.AssetKey(asset), limit=1).records
        if evaluation is None:
            status = record.status.value if record is not None else "never run"
            raise dg.Failure(f"check '{check_name}' on '{asset}' has no result ({status}): nothing is promoted; "
                             f"run the check (or the whole retrain_job) first")
        target = evaluation.target_materialization_data
        if latest and target is not None and target.storage_id != latest[0].storage_id:
            raise dg.Failure(f"check '{check_name}' last ran on an older materialisation of '{asset}': nothing is "
                             "promoted; re-run the check on the latest one")
        if not evaluation.passed:
            raise dg.Failure(f"check '{check_name}' on '{asset}' failed ({evaluation.description or 'no details'}): "
                             "a model that fails its checks is never promoted")


def production_fingerprint(instance: dg.DagsterInstance, job_records: JobRecordsResource, training_job_id: int) -> Optional[str]:
    """The data version (``fingerprint``) of the production checkpoint: dataset hash + recipe + code version.

    Taken from its ``trained_checkpoint`` materialisation when the instance still has it among the latest
    ones (exact, code version included), else rebuilt from its job row (dataset hash + config, with the
    current code version); None when neither is known (then only the dataset hash is compared).
    """
    for record in instance.fetch_materializations(dg.AssetKey("trained_checkpoint"), limit=50).records:
        mat = record.asset_materialization
        md = mat.metadata if mat is not None else {}
        if "job_id" in md and md["job_id"].value == training_job_id and "fingerprint" in md:
            return str(md["fingerprint"].value)
    try:
        row = job_records.store().get_job("training", training_job_id)
    except RecordsError:
        return None
    if not row.get("config") or not row.get("dataset_hash"):
        return None
    return training_fingerprint(row["dataset_hash"], row["config"])


def _production_export(store, training_job_id: int) -> dict[str, Any]:
    """The latest completed export of a training job (its ONNX location), for the metadata."""
    with store.session() as s:
        row = s.scalars(select(ExportJob).where(ExportJob.training_job_id == training_job_id,
                                                ExportJob.status == "completed").order_by(ExportJob.id.desc())).first()
        if row is None:
            return {}
        return {"export_job_id": row.id, "onnx": ((row.result or {}).get("formats") or {}).get("onnx")}


@dg.asset(
    deps=["trained_checkpoint", "exported_model"],
    group_name="promotion",
    kinds={"clearml"},
    description="Which model is production. The new checkpoint and the current production checkpoint are "
    "evaluated on the same validation split (the new dataset's); the new one replaces production unless its "
    "mAP50 regresses by more than the tolerance. Decisions are recorded in `model_promotions` (one row per "
    "training job, so a retry never adds a second) and as a ClearML task; online the production task and model "
    "are tagged `production`, offline `clearml sync` carries the tag.",
)
def production_model(
    context: dg.AssetExecutionContext,
    config: PromotionConfig,
    clearml: ClearMLResource,
    job_records: JobRecordsResource,
    artifacts: ArtifactStorageResource,
) -> dg.MaterializeResult:
    trained = upstream(context, "trained_checkpoint")
    exported = upstream(context, "exported_model")
    if int(exported["training_job_id"]) != int(trained["job_id"]):
        raise dg.Failure(
            f"the latest export is of training job {exported['training_job_id']}, the latest checkpoint is training "
            f"job {trained['job_id']}: materialise exported_model for it first (nothing is promoted)"
        )
    require_checks_passed(context.instance)
    try:
        tolerance = config.tolerance if config.tolerance is not None else promotion_tolerance()
    except PromotionError as exc:
        raise dg.Failure(str(exc)) from exc
    store, objects, tracker = job_records.store(), artifacts.store(), clearml.tracker()
    job_id = int(trained["job_id"])
    data_yaml = Path(trained["data_yaml"])
    work = settings.work_dir() / "promotion" / f"training-job-{job_id}" / context.run_id

    def evaluate(weights_key: str, name: str, imgsz: int) -> float:
        weights = objects.get_file(weights_key, work / name)
        value = evaluate_map50(weights, data_yaml, imgsz, batch=config.eval_batch, device=config.device)
        context.log.info(f"{name}: mAP50 {value:.4f} on the val split of {data_yaml.parent} at {imgsz} px")
        return value

    def evaluate_baseline(production: PromotionRecord) -> float:
        try:
            recipe = store.get_job("training", production.training_job_id).get("config") or {}
        except RecordsError:
            recipe = {}
        imgsz = int(recipe.get("imgsz") or trained["imgsz"])  # each model at the size it was trained for
        try:
            return evaluate(checkpoint_key(production.training_job_id, "best"), "production.pt", imgsz)
        except IncompatibleModelError:
            raise
        except (StorageError, VisionInputError) as exc:
            raise dg.Failure(
                f"the production model (training job {production.training_job_id}) cannot be evaluated for the "
                f"comparison: {exc}. Nothing is promoted; restore its checkpoint, or record a decision by hand"
            ) from exc

    candidate = Candidate(
        training_job_id=job_id,
        dataset_hash=trained.get("dataset_hash"),
        clearml_task_id=trained.get("clearml_task_id"),
        clearml_model_id=trained.get("clearml_model_id"),
        dagster_run_id=context.run_id,
    )
    try:
        outcome = promote(
            store, candidate, tolerance=tolerance,
            evaluate_candidate=lambda: evaluate(trained["best_checkpoint_key"], "candidate.pt", int(trained["imgsz"])),
            evaluate_baseline=evaluate_baseline,
        )
    except PromotionError as exc:
        raise dg.Failure(str(exc)) from exc
    decision, production = outcome.decision, outcome.production
    published = publish_decision(tracker, outcome, extra_properties={"dagster_run_id": context.run_id})
    (context.log.info if decision.promoted else context.log.warning)(
        f"training job {job_id}: {decision.decision.upper()} — {decision.reason}"
    )
    prod_export = _production_export(store, production.training_job_id)
    metadata = {
        "decision": "already production" if outcome.already_production else decision.decision,
        "reason": dg.MetadataValue.md(decision.reason),
        "candidate_training_job_id": job_id,
        "candidate_mAP50": float(decision.map50),
        "baseline_mAP50": float(decision.baseline_map50) if decision.baseline_map50 is not None else None,
        "tolerance": float(decision.tolerance),
        "production_training_job_id": production.training_job_id,
        "production_since": production.decided_at.isoformat(),
        "production_dataset_hash": production.dataset_hash or "",
        "production_clearml_task_id": production.clearml_task_id or "",
        "production_clearml_model_id": production.clearml_model_id or "",
        "replaces_training_job_id": outcome.record.replaces_training_job_id,
        "promotion_row_id": outcome.record.id,
        "promotion_clearml_task_id": published.task_id,
        "promotion_clearml_task_url": dg.MetadataValue.url(published.task_url),
        "production_tagged_in_clearml": published.tagged_online,
        "candidate_fingerprint": trained.get("fingerprint", ""),
        "production_fingerprint": production_fingerprint(context.instance, job_records, production.training_job_id) or "",
        "candidate_dataset_hash": candidate.dataset_hash or "",
    }
    if prod_export.get("onnx"):
        metadata["production_onnx"] = dg.MetadataValue.url(prod_export["onnx"])
        metadata["production_export_job_id"] = prod_export["export_job_id"]
    metadata = {k: v for k, v in metadata.items() if v is not None}
    return dg.MaterializeResult(
        metadata=metadata,
        data_version=dg.DataVersion(f"training-job-{production.training_job_id}"),
    )


@dg.asset_check(
    asset=production_model,
    description="Warns when the latest candidate was not promoted (its reason is in the description).",
)
def promotion_gate(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    event = context.instance.get_latest_materialization_event(dg.AssetKey("production_model"))
    md = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    promoted = md["decision"] in (PROMOTED, "already production")
    return dg.AssetCheckResult(
        passed=promoted,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"training job {md['candidate_training_job_id']} {md['decision']}: {md['reason']}",
        metadata={"production_training_job_id": md["production_training_job_id"]},
    )
