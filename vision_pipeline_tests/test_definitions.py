"""The whole Definitions object loads and is wired as designed (catches broken wiring before the UI does)."""

from __future__ import annotations

import dagster as dg

from vision_pipeline.definitions import defs

STAGES = ["dataset", "trained_checkpoint", "exported_model", "inference_outputs"]


def test_definitions_load_and_validate() -> None:
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert set(STAGES) <= keys
    for upstream, downstream in zip(STAGES, STAGES[1:]):
        parents = {p.to_user_string() for p in graph.get(dg.AssetKey(downstream)).parent_keys}
        assert upstream in parents, f"{downstream} must depend on {upstream}"


def test_blocking_checks_guard_each_stage() -> None:
    checks = {
        (k.asset_key.to_user_string(), k.name) for k in defs.resolve_asset_graph().asset_check_keys
    }
    assert {("dataset", "dataset_is_valid"), ("trained_checkpoint", "map50_quality_gate"),
            ("exported_model", "export_parity")} <= checks


def test_retrain_job_and_resources() -> None:
    job = defs.resolve_job_def("retrain_job")
    selected = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert set(STAGES) <= selected
    assert {"clearml", "job_records", "artifacts"} <= set(defs.resources)


def test_every_stage_has_group_kinds_and_description() -> None:
    graph = defs.resolve_asset_graph()
    for key in STAGES:
        node = graph.get(dg.AssetKey(key))
        assert node.group_name and node.description, key
        assert "clearml" in node.kinds, key


def test_training_config_has_a_form_with_defaults() -> None:
    from vision_pipeline.defs.training import TrainingConfig

    fields = TrainingConfig.model_fields
    for name in ("model", "epochs", "imgsz", "batch", "device", "seed", "lr0", "patience", "min_map50"):
        assert name in fields and fields[name].default is not None, name
        assert fields[name].description, name
