"""Run the real asset graph on tiny data (shared by the pipeline, automation and backend tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from vision_pipeline.defs.dataset import DatasetConfig, dataset, dataset_is_valid
from vision_pipeline.defs.export import ExportConfig, export_parity, exported_model
from vision_pipeline.defs.inference import InferenceConfig, inference_outputs
from vision_pipeline.defs.resources import resources_from_env
from vision_pipeline.defs.training import TrainingConfig, map50_quality_gate, trained_checkpoint

ALL_ASSETS = ["dataset", "trained_checkpoint", "exported_model", "inference_outputs"]


def tiny_run_config(source: Path | None = None, *, epochs: int = 2, model: str = "yolo11n.yaml", **training: Any) -> dg.RunConfig:
    """64 train / 16 val images of 64 px and two epochs: seconds, not minutes, on two cores."""
    return dg.RunConfig(
        ops={
            "dataset": DatasetConfig(
                source=str(source) if source else None,
                synthetic_train_images=64, synthetic_val_images=16, synthetic_imgsz=64,
            ),
            "trained_checkpoint": TrainingConfig(
                model=model, epochs=epochs, imgsz=64, batch=16, min_map50=0.0, **training
            ),
            # A two-epoch model is unsure of everything: low thresholds so parity and inference see boxes.
            "exported_model": ExportConfig(parity_images=4, conf=0.001),
            "inference_outputs": InferenceConfig(max_previews=3, conf=0.001),
        }
    )


def materialize(selection: list[str], run_config: dg.RunConfig, instance: dg.DagsterInstance | None = None):
    """The real assets and checks with the resources built from the (test's) environment.

    ``run_config`` may configure more assets than are selected; only the selected ones are passed on.
    """
    run_config = dg.RunConfig(ops={k: v for k, v in run_config.ops.items() if k in selection})
    return dg.materialize(
        [dataset, trained_checkpoint, exported_model, inference_outputs,
         dataset_is_valid, map50_quality_gate, export_parity],
        selection=selection,
        run_config=run_config,
        instance=instance or dg.DagsterInstance.ephemeral(),
        resources=resources_from_env(),
        raise_on_error=False,
    )


def latest_metadata(instance: dg.DagsterInstance, key: str) -> dict[str, Any]:
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    assert event is not None, f"{key} was not materialised"
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}
