"""Stage 4 — `inference_outputs`: the exported ONNX model run over a folder of images."""


from pathlib import Path
from typing import Optional

import dagster as dg
from pydantic import Field

from vision_pipeline import settings
from vision_pipeline.defs._common import job_metadata, markdown_table, upstream
from vision_pipeline.defs.resources import ArtifactStorageResource, ClearMLResource, JobRecordsResource
from vision_pipeline.jobs import tracked_job
from vision_pipeline.storage import inference_key
from vision_pipeline.vision.errors import VisionInputError
from vision_pipeline.vision.predict import default_sample_images, predict_folder

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


class InferenceConfig(dg.Config):
    images: Optional[str] = Field(
        default=None,
        description="Folder of images to run on. Empty: the dataset's val images plus ultralytics' sample images.",
    )
    conf: float = Field(default=0.25, gt=0, lt=1, description="Confidence threshold")
    max_previews: int = Field(default=8, ge=0, description="Annotated preview images written and logged to ClearML")


def _images(config: InferenceConfig, data_yaml: str) -> list[Path]:
    if config.images:
        folder = Path(config.images).expanduser()
        if not folder.is_dir():
            raise VisionInputError("image folder does not exist", path=folder)
        found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise VisionInputError("no images (.jpg, .png, ...) in this folder", path=folder)
        return found
    val = sorted(p for p in (Path(data_yaml).parent / "images" / "val").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return val + default_sample_images()


@dg.asset(
    deps=["exported_model"],
    group_name="inference",
    kinds={"onnx", "clearml"},
    description="Predictions of the exported ONNX model (onnxruntime) as JSON Lines (image, class, confidence, "
    "box) plus annotated previews; counts, latency percentiles and previews are logged to ClearML.",
)
def inference_outputs(
    context: dg.AssetExecutionContext,
    config: InferenceConfig,
    clearml: ClearMLResource,
    job_records: JobRecordsResource,
    artifacts: ArtifactStorageResource,
) -> dg.MaterializeResult:
    exported = upstream(context, "exported_model")
    store = artifacts.store()
    images = _images(config, exported["data_yaml"])
    with tracked_job(
        job_records.store(), clearml.tracker(), "inference",
        label=Path(exported["onnx_key"]).name, config=config.model_dump(), dagster_run_id=context.run_id,
        export_job_id=exported["job_id"],
    ) as job:
        task = job.task
        task.connect({**config.model_dump(), "export_job_id": exported["job_id"], "images": len(images)}, name="inference")
        work = settings.work_dir() / "inference" / f"job-{job.id}"
        model = store.get_file(exported["onnx_key"], work / "model.onnx")
        context.log.info(f"running {model.name} over {len(images)} images")
        stats = predict_folder(model, images, work / "out", imgsz=int(exported["imgsz"]), conf=config.conf,
                               class_names=list(exported["class_names"]), max_previews=config.max_previews)
        task.log_metrics({"inference_images": stats.images, "inference_detections": stats.detections}, 0)
        for name, value in stats.latency_ms.items():
            task.log_scalar("latency_ms", name, value, 0)
        task.log_scalar("throughput", "images_per_second", stats.images_per_second, 0)
        for i, preview in enumerate(stats.preview_paths):
            task.log_image("previews", preview.name, preview, iteration=i)
        uploaded = store.put_tree(work / "out", inference_key(job.id, "outputs"))
        jsonl = next(o for o in uploaded if o.key.endswith("predictions.jsonl"))
        task.upload_artifact("predictions", jsonl.uri if jsonl.uri.startswith("s3://") else stats.jsonl_path,
                             {"key": jsonl.key, "uri": jsonl.uri, "sha256": jsonl.sha256, "detections": stats.detections})
        job.result = {k: v for k, v in stats.to_dict().items() if k not in ("first_rows", "preview_paths")}
        job.result["predictions_uri"] = jsonl.uri
        metadata = {
            **job_metadata(job),
            "export_job_id": exported["job_id"],
            "images": stats.images,
            "detections": stats.detections,
            "per_class": dg.MetadataValue.json(stats.per_class),
            "latency_ms_p50": float(stats.latency_ms["p50"]),
            "latency_ms_p99": float(stats.latency_ms["p99"]),
            "images_per_second": float(stats.images_per_second),
            "predictions": dg.MetadataValue.url(jsonl.uri),
            "previews": dg.MetadataValue.path(str(work / "out" / "previews")),
            "first_predictions": dg.MetadataValue.md(
                markdown_table(stats.first_rows, ["image", "class", "confidence", "box_xyxy"])
            ),
        }
    return dg.MaterializeResult(metadata=metadata)
