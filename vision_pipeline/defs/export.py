"""Stage 3 — `exported_model`: ONNX (and TorchScript) export of the best checkpoint, verified for parity."""


from pathlib import Path

import dagster as dg
from pydantic import Field

from vision_pipeline import settings
from vision_pipeline.defs._common import job_metadata, upstream
from vision_pipeline.defs.resources import ArtifactStorageResource, ClearMLResource, JobRecordsResource
from vision_pipeline.jobs import tracked_job
from vision_pipeline.storage import export_key
from vision_pipeline.vision.export import check_parity, export_model


class ExportConfig(dg.Config):
    formats: list[str] = Field(default=["onnx", "torchscript"], description="Export formats (onnx is required)")
    parity_images: int = Field(default=8, ge=1, description="Validation images compared between PyTorch and ONNX")
    box_tolerance_px: float = Field(default=2.0, gt=0, description="Largest allowed box-corner difference, pixels")
    conf: float = Field(default=0.25, gt=0, lt=1, description="Confidence threshold for the parity comparison")


@dg.asset(
    deps=["trained_checkpoint"],
    group_name="export",
    kinds={"onnx", "clearml"},
    description="The best checkpoint exported to ONNX and TorchScript. It counts only once onnxruntime's "
    "detections match PyTorch's on validation images (same classes, boxes within the tolerance).",
)
def exported_model(
    context: dg.AssetExecutionContext,
    config: ExportConfig,
    clearml: ClearMLResource,
    job_records: JobRecordsResource,
    artifacts: ArtifactStorageResource,
) -> dg.MaterializeResult:
    if "onnx" not in config.formats:
        raise dg.Failure("ExportConfig.formats must include 'onnx': inference runs the ONNX model")
    trained = upstream(context, "trained_checkpoint")
    store = artifacts.store()
    with tracked_job(
        job_records.store(), clearml.tracker(), "export",
        label="+".join(config.formats), config=config.model_dump(), dagster_run_id=context.run_id,
        training_job_id=trained["job_id"], formats=",".join(config.formats),
    ) as job:
        task = job.task
        task.connect({**config.model_dump(), "training_job_id": trained["job_id"]}, name="export")
        work = settings.work_dir() / "exports" / f"job-{job.id}"
        weights = store.get_file(trained["best_checkpoint_key"], work / "best.pt")
        imgsz = int(trained["imgsz"])
        files = export_model(weights, work / "out", imgsz=imgsz, formats=tuple(config.formats))
        images = sorted((Path(trained["data_yaml"]).parent / "images" / "val").glob("*"))[: config.parity_images]
        parity = check_parity(weights, files["onnx"], images, imgsz=imgsz, conf=config.conf,
                              box_tolerance_px=config.box_tolerance_px)
        context.log.info(
            f"parity on {parity.images} images: {parity.matched} matched, max box diff "
            f"{parity.max_box_diff_px:.3f} px (tolerance {config.box_tolerance_px}), "
            f"{parity.class_mismatches} class mismatches"
        )
        task.log_scalar("parity", "max_box_diff_px", parity.max_box_diff_px, 0)
        task.log_scalar("parity", "matched", parity.matched, 0)
        if not parity.passed:
            # Nothing counts from a model that disagrees with its checkpoint: no upload, no registration.
            raise dg.Failure(
                f"ONNX export of training job {trained['job_id']} does not match PyTorch: " + "; ".join(parity.details[:5]),
                metadata={"parity": dg.MetadataValue.json(parity.to_dict())},
            )
        stored = {}
        for fmt, path in files.items():
            obj = store.put_file(path, export_key(job.id, fmt, path.name), metadata={"job_id": str(job.id), "format": fmt})
            stored[fmt] = obj
            task.upload_artifact(f"export_{fmt}", obj.uri if obj.uri.startswith("s3://") else path,
                                 {"format": fmt, "key": obj.key, "uri": obj.uri, "sha256": obj.sha256})
        onnx = stored["onnx"]
        model_id = task.register_model(
            onnx.uri if onnx.uri.startswith("s3://") else files["onnx"],
            name=f"Export Job {job.id} - onnx", framework="ONNX",
            tags=["onnx", f"training-job:{trained['job_id']}"],
            metadata={"training_job_id": trained["job_id"], "imgsz": imgsz, "max_box_diff_px": parity.max_box_diff_px},
        )
        job.result = {
            "formats": {fmt: obj.uri for fmt, obj in stored.items()},
            "parity": parity.to_dict(),
            "parity_passed": parity.passed,
            "clearml_model_id": model_id,
        }
        metadata = {
            **job_metadata(job),
            "training_job_id": trained["job_id"],
            "onnx_key": onnx.key,
            "onnx": dg.MetadataValue.url(onnx.uri),
            "onnx_sha256": onnx.sha256,
            "onnx_bytes": onnx.size,
            "formats": dg.MetadataValue.json({fmt: obj.uri for fmt, obj in stored.items()}),
            "parity_passed": parity.passed,
            "parity_images": parity.images,
            "parity_matched": parity.matched,
            "parity_max_box_diff_px": float(parity.max_box_diff_px),
            "parity_box_tolerance_px": config.box_tolerance_px,
            "parity_class_mismatches": parity.class_mismatches,
            "clearml_model_id": model_id,
            "imgsz": imgsz,
            "data_yaml": trained["data_yaml"],
            "class_names": dg.MetadataValue.json(trained["class_names"]),
        }
    return dg.MaterializeResult(metadata=metadata)


@dg.asset_check(
    asset=exported_model, blocking=True,
    description="Export parity: ONNX matched PyTorch within tolerance, and the stored ONNX file is intact.",
)
def export_parity(context: dg.AssetCheckExecutionContext, artifacts: ArtifactStorageResource) -> dg.AssetCheckResult:
    event = context.instance.get_latest_materialization_event(dg.AssetKey("exported_model"))
    md = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    # get_file re-verifies the stored bytes against the recorded sha256; a damaged file raises.
    work = settings.work_dir() / "checks" / context.op_execution_context.run_id
    artifacts.store().get_file(md["onnx_key"], work / "model.onnx")
    within = md["parity_max_box_diff_px"] <= md["parity_box_tolerance_px"]
    passed = bool(md["parity_passed"]) and within and md["parity_class_mismatches"] == 0 and md["parity_images"] > 0
    return dg.AssetCheckResult(
        passed=passed,
        description=f"max box diff {md['parity_max_box_diff_px']:.3f} px (tolerance {md['parity_box_tolerance_px']}) "
        f"on {md['parity_images']} images, {md['parity_class_mismatches']} class mismatches",
        metadata={"max_box_diff_px": md["parity_max_box_diff_px"]},
    )
