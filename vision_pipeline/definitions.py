"""The whole pipeline at a glance.

    dataset ──► trained_checkpoint ──► exported_model ──► inference_outputs ──► production_model
    (check: valid)  (check: mAP50 gate)   (check: parity)                       (check: promotion gate)

    retrain_job runs them all; retrain_sensor (new data in VISION_PIPELINE_WATCH_DIR) and
    retrain_schedule (weekly, on in production) launch it unless the data and recipe are unchanged.

Every materialisation is one ClearML task and one job row (see ``vision_pipeline.jobs``). Resources
read servers and secrets from the environment at launch (``dg.EnvVar``); with nothing configured the
pipeline runs on embedded defaults: SQLite job records, offline ClearML sessions and local artifacts,
all under the project home.
"""

from __future__ import annotations

import dagster as dg

from vision_pipeline.defs import automation
from vision_pipeline.defs.dataset import dataset, dataset_is_valid
from vision_pipeline.defs.export import export_parity, exported_model
from vision_pipeline.defs.inference import inference_outputs
from vision_pipeline.defs.promotion import production_model, promotion_gate
from vision_pipeline.defs.resources import resources_from_env
from vision_pipeline.defs.training import map50_quality_gate, trained_checkpoint

defs = dg.Definitions(
    assets=[dataset, trained_checkpoint, exported_model, inference_outputs, production_model],
    asset_checks=[dataset_is_valid, map50_quality_gate, export_parity, promotion_gate],
    jobs=automation.jobs,
    sensors=automation.sensors,
    schedules=automation.schedules,
    resources=resources_from_env(),
    # The graph is a chain, so steps gain nothing from running in parallel; in one process they share
    # a single import of torch/ultralytics/ClearML (several seconds per step with the multiprocess
    # executor, which dominated the orchestration overhead measured by `make bench`).
    executor=dg.in_process_executor,
)
