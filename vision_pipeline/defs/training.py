"""Stage 2 — `trained_checkpoint`: ultralytics YOLO trained on the dataset, tracked epoch by epoch."""


import hashlib
import json
from pathlib import Path

import dagster as dg
from pydantic import Field

from vision_pipeline import settings
from vision_pipeline.defs._common import job_metadata, upstream
from vision_pipeline.defs.resources import ArtifactStorageResource, ClearMLResource, JobRecordsResource
from vision_pipeline.jobs import tracked_job
from vision_pipeline.storage import checkpoint_key
from vision_pipeline.vision.training import EpochReport, TrainConfig, resolve_model, train

_RECIPE = TrainConfig()  # the default recipe; the launchpad form starts from it
TRAINING_CODE_VERSION = "1"


class TrainingConfig(dg.Config):
    model: str = Field(default=_RECIPE.model, description="Model YAML bundled with ultralytics (yolo11n.yaml), a YAML path, or a local .pt")
    epochs: int = Field(default=_RECIPE.epochs, description="Training epochs")
    imgsz: int = Field(default=_RECIPE.imgsz, description="Input image size (pixels)")
    batch: int = Field(default=_RECIPE.batch, description="Batch size")
    device: str = Field(default=_RECIPE.device, description="'cpu', a CUDA index like '0', or 'mps'")
    seed: int = Field(default=_RECIPE.seed, description="Random seed (deterministic training)")
    optimizer: str = Field(default=_RECIPE.optimizer, description="SGD, Adam, AdamW, ... (ultralytics names)")
    lr0: float = Field(default=_RECIPE.lr0, description="Initial learning rate")
    lrf: float = Field(default=_RECIPE.lrf, description="Final learning rate as a fraction of lr0")
    warmup_epochs: float = Field(default=_RECIPE.warmup_epochs, description="Warm-up epochs")
    patience: int = Field(default=_RECIPE.patience, description="Early-stopping patience (epochs without improvement)")
    mosaic: float = Field(default=_RECIPE.mosaic, description="Mosaic augmentation probability")
    workers: int = Field(default=_RECIPE.workers, description="Data-loader worker processes")
    min_map50: float = Field(default=0.5, ge=0.0, le=1.0, description="Quality gate: the blocking check fails below this mAP50 on val")

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            model=self.model, epochs=self.epochs, imgsz=self.imgsz, batch=self.batch, device=self.device,
            seed=self.seed, optimizer=self.optimizer, lr0=self.lr0, lrf=self.lrf,
            warmup_epochs=self.warmup_epochs, patience=self.patience, mosaic=self.mosaic, workers=self.workers,
        )


def training_fingerprint(dataset_hash: str, config: dict) -> str:
    """Data version of a checkpoint: the dataset's hash plus the training config (minus the gate)."""
    recipe = {k: v for k, v in config.items() if k != "min_map50"}
    blob = json.dumps({"dataset": dataset_hash, "config": recipe, "code": TRAINING_CODE_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@dg.asset(
    deps=["dataset"],
    group_name="training",
    kinds={"pytorch", "clearml"},
    code_version=TRAINING_CODE_VERSION,
    description="YOLO trained from a model YAML (or a local .pt) on the latest dataset. Every epoch's losses, "
    "mAP50, mAP50-95, precision, recall and learning rate go to ClearML; `best`/`last` checkpoints go to the "
    "artifact store and ClearML; `best` is registered as the task's output model.",
)
def trained_checkpoint(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    clearml: ClearMLResource,
    job_records: JobRecordsResource,
    artifacts: ArtifactStorageResource,
) -> dg.MaterializeResult:
    data = upstream(context, "dataset")
    train_config = config.train_config()
    store = artifacts.store()
    model_label = Path(config.model).stem
    with tracked_job(
        job_records.store(), clearml.tracker(), "training",
        label=model_label, config=config.model_dump(), dagster_run_id=context.run_id,
        model_name=config.model, dataset_hash=data["content_hash"],
    ) as job:
        task = job.task
        task.connect(train_config.to_dict(), name="train")
        task.set_properties(dataset_hash=data["content_hash"], dataset_job_id=data["job_id"])
        resolve_model(config.model)  # a missing .pt / unknown YAML fails here, naming it

        def on_epoch(report: EpochReport) -> None:
            task.log_metrics(report.metrics, report.epoch)
            line = report.line()
            task.log_text(line)
            context.log.info(line)

        out_dir = settings.work_dir() / "training" / f"job-{job.id}"
        result = train(Path(data["data_yaml"]), out_dir, train_config, on_epoch=on_epoch)
        context.log.info(
            f"trained {result.epochs_run} epochs in {result.seconds:.0f} s: "
            + ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items())
        )
        stored = {}
        for kind, path in (("last", result.last_path), ("best", result.best_path)):
            obj = store.put_file(path, checkpoint_key(job.id, kind), metadata={"job_id": str(job.id), "type": kind})
            stored[kind] = obj
            task.upload_artifact(
                f"checkpoint_{kind}", obj.uri if obj.uri.startswith("s3://") else path,
                {"checkpoint_type": kind, "is_best": kind == "best", "key": obj.key, "uri": obj.uri, "sha256": obj.sha256},
            )
        model_id = task.register_model(
            stored["best"].uri if stored["best"].uri.startswith("s3://") else result.best_path,
            name=f"Training Job {job.id} - {model_label} (best)",
            tags=["best", model_label, f"dataset:{data['content_hash'][:12]}"],
            metadata={**result.metrics, "job_id": job.id, "dataset_hash": data["content_hash"]},
            labels={name: i for i, name in enumerate(result.class_names)},
        )
        job.result = {
            **result.metrics,
            "epochs_run": result.epochs_run,
            "seconds": round(result.seconds, 2),
            "best_key": stored["best"].key,
            "best_uri": stored["best"].uri,
            "clearml_model_id": model_id,
        }
        metadata = {
            **job_metadata(job),
            **{k: float(v) for k, v in result.metrics.items()},
            "min_map50": config.min_map50,
            "epochs_run": result.epochs_run,
            "train_seconds": round(result.seconds, 1),
            "best_checkpoint_key": stored["best"].key,
            "best_checkpoint": dg.MetadataValue.url(stored["best"].uri),
            "best_sha256": stored["best"].sha256,
            "clearml_model_id": model_id,
            "dataset_hash": data["content_hash"],
            "dataset_job_id": data["job_id"],
            "data_yaml": data["data_yaml"],
            "imgsz": config.imgsz,
            "class_names": dg.MetadataValue.json(result.class_names),
        }
    fingerprint = training_fingerprint(data["content_hash"], config.model_dump())
    return dg.MaterializeResult(metadata={**metadata, "fingerprint": fingerprint}, data_version=dg.DataVersion(fingerprint))


@dg.asset_check(
    asset=trained_checkpoint, blocking=True,
    description="Quality gate: the best checkpoint's mAP50 on val is at least the run's `min_map50`.",
)
def map50_quality_gate(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    event = context.instance.get_latest_materialization_event(dg.AssetKey("trained_checkpoint"))
    md = event.asset_materialization.metadata
    map50, threshold = float(md["mAP50"].value), float(md["min_map50"].value)
    return dg.AssetCheckResult(
        passed=map50 >= threshold,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"mAP50 {map50:.3f} {'>=' if map50 >= threshold else '<'} threshold {threshold:.3f}",
        metadata={"mAP50": map50, "threshold": threshold},
    )
