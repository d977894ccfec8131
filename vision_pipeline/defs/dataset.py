"""Stage 1 — `dataset`: a validated YOLO detection dataset, versioned by its content hash."""

from pathlib import Path
from typing import Optional

import dagster as dg
from pydantic import Field

from vision_pipeline import settings
from vision_pipeline.defs._common import job_metadata, markdown_table
from vision_pipeline.defs.resources import ClearMLResource, JobRecordsResource
from vision_pipeline.jobs import tracked_job
from vision_pipeline.vision.dataset import prepare_dataset, validate_dataset


class DatasetConfig(dg.Config):
    source: Optional[str] = Field(
        default=None,
        description="Folder holding a YOLO dataset (data.yaml, images/{train,val}, labels/{train,val}). "
        "Empty: generate the deterministic synthetic shapes dataset.",
    )
    synthetic_train_images: int = Field(default=320, description="Synthetic dataset: training images")
    synthetic_val_images: int = Field(default=80, description="Synthetic dataset: validation images")
    synthetic_imgsz: int = Field(default=128, description="Synthetic dataset: image side in pixels")
    seed: int = Field(default=0, description="Synthetic dataset: random seed")


@dg.asset(
    group_name="dataset",
    kinds={"yolo", "clearml"},
    description="A YOLO-format detection dataset copied from `source` (or generated), every image decoded and "
    "every label line checked. Its content hash is the data version that downstream retraining keys on.",
)
def dataset(
    context: dg.AssetExecutionContext,
    config: DatasetConfig,
    clearml: ClearMLResource,
    job_records: JobRecordsResource,
) -> dg.MaterializeResult:
    source = Path(config.source).expanduser() if config.source else None
    synthetic = {
        "n_train": config.synthetic_train_images,
        "n_val": config.synthetic_val_images,
        "imgsz": config.synthetic_imgsz,
        "seed": config.seed,
    }
    with tracked_job(
        job_records.store(), clearml.tracker(), "dataset",
        label=source.name if source else "synthetic", config=config.model_dump(), dagster_run_id=context.run_id,
    ) as job:
        job.task.connect(config.model_dump(), name="dataset")
        dest = settings.work_dir() / "datasets" / f"job-{job.id}"
        context.log.info(f"preparing dataset from {source or 'the synthetic generator'} into {dest}")
        stats = prepare_dataset(dest, source, synthetic_kwargs=None if source else synthetic)
        summary = stats.to_dict()
        for split, count in stats.images.items():
            job.task.log_scalar("images", split, count, 0)
            for name, n in stats.instances.get(split, {}).items():
                job.task.log_scalar(f"instances_{split}", name, n, 0)
        job.task.set_properties(content_hash=stats.content_hash, location=str(stats.root))
        job.store.update_job("dataset", job.id, content_hash=stats.content_hash)
        job.result = summary
        metadata = {
            **job_metadata(job),
            "content_hash": stats.content_hash,
            "location": dg.MetadataValue.path(str(stats.root)),
            "data_yaml": str(stats.root / "data.yaml"),
            "class_names": dg.MetadataValue.json(stats.class_names),
            "images": dg.MetadataValue.json(stats.images),
            "instances": dg.MetadataValue.json(stats.instances),
            "counts": dg.MetadataValue.md(_counts_table(stats)),
        }
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(stats.content_hash))


def _counts_table(stats) -> str:
    rows = [
        {"split": split, "images": stats.images[split], **stats.instances.get(split, {})}
        for split in stats.images
    ]
    return markdown_table(rows, ["split", "images", *stats.class_names])


@dg.asset_check(asset=dataset, blocking=True, description="The stored dataset still validates and has images of every class in train.")
def dataset_is_valid(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    event = context.instance.get_latest_materialization_event(dg.AssetKey("dataset"))
    root = Path(event.asset_materialization.metadata["location"].value)
    stats = validate_dataset(root)  # raises (check errors) if it cannot be evaluated
    missing = [n for n in stats.class_names if not stats.instances.get("train", {}).get(n)]
    return dg.AssetCheckResult(
        passed=not missing and all(stats.images.values()),
        metadata={"images": dg.MetadataValue.json(stats.images), "classes_without_train_instances": dg.MetadataValue.json(missing)},
    )
