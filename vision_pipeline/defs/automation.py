"""Jobs, sensors and schedules."""


import dagster as dg

# dataset -> trained_checkpoint -> exported_model -> inference_outputs, with their checks.
retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=dg.AssetSelection.assets("dataset", "trained_checkpoint", "exported_model", "inference_outputs"),
    description="The whole pipeline: dataset, training, export (with parity), inference.",
)

jobs = [retrain_job]
sensors: list = []
schedules: list = []
