"""The UI path: launch through the webserver's GraphQL API (as the launchpad does), with the daemon
dequeuing the run; the launchpad's config form; the asset page in headless Chromium.

One webserver + daemon + instance is shared by the module (starting them loads the code location
twice, and the launched run trains a tiny model). Needs Debian's ``chromium`` for the browser test:
missing, it fails in CI (CI=true) and skips elsewhere.
"""

from __future__ import annotations

import html
import json
import os
import sys
import time
from pathlib import Path

import pytest

from vision_pipeline_tests import ui_harness as h

pytestmark = [
    pytest.mark.ui,
    # dagster_graphql's own client still passes variable_values the way gql 4 deprecates
    pytest.mark.filterwarnings("ignore:Using variable_values:DeprecationWarning"),
]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
STARTUP_TIMEOUT_S = float(os.environ.get("VISION_PIPELINE_UI_STARTUP_TIMEOUT", 600))
RUN_TIMEOUT_S = float(os.environ.get("VISION_PIPELINE_UI_RUN_TIMEOUT", 1200))  # a loaded two-core box
ASSETS = ("dataset", "trained_checkpoint", "exported_model", "inference_outputs")
STAGE_KIND = {"dataset": "dataset", "trained_checkpoint": "training", "exported_model": "export",
              "inference_outputs": "inference"}


def _say(message: str) -> None:
    print(f"[test_ui] {message}", file=sys.stderr, flush=True)


@pytest.fixture(scope="module")
def ui_homes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("ui")
    return base / "vp_home", h.prepare_instance(base / "vp_home" / "dagster")


@pytest.fixture(scope="module")
def ui(ui_homes):
    vp_home, dagster_home = ui_homes
    env = h.isolated_env(vp_home, dagster_home)  # no real ClearML/Postgres/S3 from the caller's shell
    with h.DagsterUI(dagster_home=dagster_home, env=env, log_dir=vp_home.parent / "logs",
                     startup_timeout_s=STARTUP_TIMEOUT_S) as server:
        _say(f"webserver + daemon ready at {server.url} in {server.startup_seconds:.0f} s")
        yield server


@pytest.fixture(scope="module")
def launched_run(ui) -> dict:
    """The tiny pipeline launched through GraphQL; the daemon dequeues it. Waits for it to finish."""
    started = time.monotonic()
    run_id = ui.launch(h.TINY_RUN_CONFIG, tags={"launched_by": "test_ui"})
    statuses: list[str] = []

    def on_status(status: str, seconds: float) -> None:
        statuses.append(status)
        _say(f"run {run_id[:8]} {status} after {seconds:.0f} s")

    status = ui.wait_for_run(run_id, timeout_s=RUN_TIMEOUT_S, on_status=on_status)
    seconds = time.monotonic() - started
    if status != "SUCCESS":
        ui.print_logs(f"run {status}")
        pytest.fail(f"run {run_id} ended {status} after {seconds:.0f} s:\n{ui.run_failure_summary(run_id)}")
    return {"run_id": run_id, "seconds": seconds, "statuses": statuses}


def test_tiny_run_config_matches_the_pipeline_helpers():
    from vision_pipeline_tests.pipeline_helpers import tiny_run_config

    reference = tiny_run_config().to_config_dict()["ops"]
    for op, body in h.TINY_RUN_CONFIG["ops"].items():
        for key, value in body["config"].items():
            assert reference[op]["config"][key] == value, f"{op}.{key}"


def test_launchpad_form_has_the_training_config_with_defaults(ui):
    from vision_pipeline.defs.training import TrainingConfig

    fields = ui.op_config_fields("trained_checkpoint")
    expected = TrainingConfig().model_dump()
    for name in ("model", "epochs", "imgsz", "batch", "device", "seed", "lr0", "patience", "min_map50"):
        assert name in expected
    assert set(fields) == set(expected), f"form fields {sorted(fields)} != TrainingConfig {sorted(expected)}"
    for name, value in expected.items():
        field = fields[name]
        assert field["has_default"] and not field["required"], f"{name} has no default in the form: {field}"
        assert field["default"] == json.loads(json.dumps(value)), f"{name}: form {field['default']!r} != {value!r}"
        assert field["description"], f"{name} has no description in the form"
    # The launchpad's scaffold ("Scaffold missing config") is rootDefaultYaml: every stage's config, filled in.
    scaffold = ui.run_config_schema()["rootDefaultYaml"]
    for op in ASSETS:
        assert f"{op}:" in scaffold
    assert f"epochs: {expected['epochs']}" in scaffold


def test_run_launched_through_graphql_is_dequeued_by_the_daemon(ui, ui_homes, launched_run):
    import dagster as dg

    from vision_pipeline.records.store import JobStore

    vp_home, dagster_home = ui_homes
    run_id = launched_run["run_id"]
    _say(f"run {run_id} finished in {launched_run['seconds']:.0f} s ({' -> '.join(launched_run['statuses'])})")

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.job_name == h.JOB and run.tags.get("launched_by") == "test_ui"
        # Queued by the webserver's QueuedRunCoordinator, then dequeued and started by the daemon.
        records = instance.get_records_for_run(run_id, of_type={
            dg.DagsterEventType.RUN_ENQUEUED, dg.DagsterEventType.RUN_STARTING}).records
        order = [r.event_log_entry.dagster_event.event_type for r in records]
        assert order == [dg.DagsterEventType.RUN_ENQUEUED, dg.DagsterEventType.RUN_STARTING], order
        metadata = {}
        for key in ASSETS:
            event = instance.get_latest_materialization_event(dg.AssetKey(key))
            assert event is not None and event.run_id == run_id, f"{key} not materialised by run {run_id}"
            md = event.asset_materialization.metadata
            url = md["clearml_task_url"]
            assert isinstance(url, dg.UrlMetadataValue), f"{key}: clearml_task_url is {type(url).__name__}"
            assert url.url.startswith(("http://", "https://", "file://")), url.url
            metadata[key] = {k: v.value for k, v in md.items()}
        assert 0.0 <= metadata["trained_checkpoint"]["mAP50"] <= 1.0

    store = JobStore(f"sqlite:///{vp_home / 'jobs.sqlite'}")
    try:
        rows = [r for r in store.list_jobs(limit=500) if r["dagster_run_id"] == run_id]
    finally:
        store.dispose()
    by_kind = {r["kind"]: r for r in rows}
    assert set(STAGE_KIND.values()) <= set(by_kind), rows
    for key, kind in STAGE_KIND.items():
        row = by_kind[kind]
        assert row["status"] == "completed", row
        assert row["id"] == metadata[key]["job_id"]
        assert row["clearml_task_id"] == metadata[key]["clearml_task_id"]


def _require_chromium() -> None:
    if h.chromium_executable():
        return
    message = "Debian's chromium is not installed (apt-get install -y chromium)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def test_asset_page_shows_clearml_link_and_metrics(ui, ui_homes, launched_run):
    import dagster as dg

    _require_chromium()
    vp_home, dagster_home = ui_homes
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("trained_checkpoint"))
        clearml_url = event.asset_materialization.metadata["clearml_task_url"].url
    page = f"{ui.url}/assets/trained_checkpoint"

    # 1. What a plain `chromium --dump-dom` renders (the SPA gets a virtual-time budget to fetch and draw).
    started = time.monotonic()
    dom = h.chromium_cli(page, dump_dom=True, virtual_time_budget_ms=15000)
    _say(f"--dump-dom of {page}: {len(dom)} chars in {time.monotonic() - started:.0f} s")
    for label in ("clearml_task_url", "clearml_task_id", "mAP50", "mAP50-95", "precision", "recall"):
        assert f">{label}<" in dom, f"metadata label {label!r} not on the asset page"
    assert f'href="{html.escape(clearml_url, quote=True)}"' in dom, f"no link to {clearml_url} on the asset page"

    # 2. A real look: the community dialog clicked away, the metadata table visible, a screenshot kept.
    shot = vp_home.parent / "asset-page.png"
    with h.HeadlessChromium(width=1600, height=1400) as browser:
        browser.navigate(page)
        text = browser.wait_for(lambda t: "clearml_task_url" in t and "mAP50" in t, timeout_s=120)
        h.dismiss_community_dialog(browser, timeout_s=5)
        text = browser.text()
        assert h.COMMUNITY_DIALOG_TITLE not in text
        assert clearml_url in text and "mAP50" in text
        browser.screenshot(shot)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, f"{shot}: {len(data)} bytes"
    _say(f"screenshot {shot}")
