"""Retraining sensor, schedule and promotion gate.

Sensor and schedule: real folders, a real SQLite job-record database and an ephemeral Dagster
instance; ticks are evaluated with ``dg.build_sensor_context`` / ``dg.build_schedule_context``.
Promotion: the gate's records on the real database with given mAP50 values, then the real
``production_model`` asset on one real (tiny) training shared by the module.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test
from sqlalchemy import delete

from vision_pipeline import settings
from vision_pipeline.defs.automation import (
    TAG_DATASET_HASH,
    TAG_RUN_KEY,
    AutomationSettingsError,
    ScheduleSettings,
    SensorCursor,
    build_retrain_schedule,
    retrain_job,
    retrain_sensor,
    run_key_for,
    schedule_settings_from_env,
    synthetic_dataset_hash,
)
from vision_pipeline.defs.resources import JobRecordsResource
from vision_pipeline.promotion import (
    Candidate,
    PromotionError,
    PromotionSettingsError,
    current_production,
    decide,
    list_promotions,
    promote,
    promotion_tolerance,
    publish_decision,
    record_decision,
)
from vision_pipeline.records.models import ModelPromotion
from vision_pipeline.records.store import JobStore
from vision_pipeline.tracking import ClearMLConfig, ClearMLTracker
from vision_pipeline.tracking.session_reader import session_for_task
from vision_pipeline.vision.dataset import content_hash, prepare_dataset
from vision_pipeline.vision.evaluate import IncompatibleModelError
from vision_pipeline.vision.synthetic import generate_synthetic_dataset
from vision_pipeline_tests.test_watch import age, run_as_nobody

# ------------------------------------------------------------------------------------------ helpers


def job_store() -> JobStore:
    store = JobStore(settings.database_url())
    store.ensure_schema()
    return store


def tick(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, cursor=cursor,
                                 resources={"job_records": JobRecordsResource()}) as context:
        return retrain_sensor(context)


def skip_text(result: dg.SensorResult) -> str:
    assert not result.run_requests, result.run_requests
    return result.skip_reason.skip_message


def stored(previous: str | None, result: dg.SensorResult) -> str | None:
    """The cursor Dagster keeps after ``result`` (None in a result leaves the previous one)."""
    return result.cursor if result.cursor is not None else previous


def launched(instance: dg.DagsterInstance, request: dg.RunRequest, status=dg.DagsterRunStatus.SUCCESS) -> None:
    """What the daemon does with a RunRequest: a run of retrain_job carrying the request's tags."""
    create_run_for_test(instance, job_name=retrain_job.name, tags=request.tags, status=status)


def make_production(store: JobStore, dataset_hash: str, *, map50: float = 0.5, **recipe: Any) -> int:
    """A finished training job on ``dataset_hash`` (default recipe unless overridden), recorded as production."""
    from vision_pipeline.defs.training import TrainingConfig

    config = TrainingConfig(**recipe).model_dump()
    job_id = store.create_job("training", config=config, dataset_hash=dataset_hash)
    record_decision(store, Candidate(job_id, dataset_hash=dataset_hash), decide(map50, None, 0.02),
                    expected_production_job_id=None)
    return job_id


@pytest.fixture
def watched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    src = tmp_path / "watched"
    generate_synthetic_dataset(src, n_train=6, n_val=3, imgsz=32)
    age(src)
    monkeypatch.setenv("VISION_PIPELINE_WATCH_DIR", str(src))
    monkeypatch.setenv("VISION_PIPELINE_MIN_RETRAIN_INTERVAL_S", "0")
    monkeypatch.setenv("VISION_PIPELINE_WATCH_SETTLE_S", "10")
    return src


def add_image(src: Path, name: str, split: str = "train") -> None:
    """Copy an existing image/label pair under a new name, with old mtimes (a finished copy)."""
    img = sorted((src / "images" / split).iterdir())[0]
    shutil.copy2(img, src / "images" / split / f"{name}{img.suffix}")
    shutil.copy2(src / "labels" / split / f"{img.stem}.txt", src / "labels" / split / f"{name}.txt")
    age(src)


# ------------------------------------------------------------------------------------------ sensor


def test_sensor_without_a_folder_says_how_to_set_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VISION_PIPELINE_WATCH_DIR", raising=False)
    result = tick(dg.DagsterInstance.ephemeral(), None)
    assert "VISION_PIPELINE_WATCH_DIR" in skip_text(result) and result.cursor is None


def test_sensor_requests_once_and_cursor_advances(watched: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    result = tick(instance, None)
    (request,) = result.run_requests
    expected = run_key_for(content_hash(watched))  # the data version training would get
    assert request.run_key == expected == request.tags[TAG_RUN_KEY]
    assert request.tags[TAG_DATASET_HASH] == content_hash(watched)
    assert request.run_config == {"ops": {"dataset": {"config": {"source": str(watched)}}}}
    cursor = json.loads(result.cursor)
    assert cursor["last_run_key"] == expected and cursor["watch"]["root"] == str(watched)
    assert set(cursor["watch"]["dirs"]) == {"", "images", "images/train", "images/val", "labels", "labels/train", "labels/val"}
    launched(instance, request, dg.DagsterRunStatus.STARTED)

    # Nothing changed: skipped, the stored cursor stays.
    idle = tick(instance, result.cursor)
    assert "no change" in skip_text(idle) and idle.cursor is None

    # A real change: a new request, keyed on the new content, and the cursor moves on.
    add_image(watched, "new_one")
    changed = tick(instance, result.cursor)
    # retrain_job is in flight (the first run): it waits, and remembers the pending change.
    assert "is started: waiting for it" in skip_text(changed)
    pending = SensorCursor.from_json(changed.cursor)
    assert pending.pending and pending.pending_hash == content_hash(watched)
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        instance.report_run_canceled(run)
    # The run ended: the pending change is requested without another change on disk.
    after = tick(instance, changed.cursor)
    (request2,) = after.run_requests
    assert request2.run_key == run_key_for(content_hash(watched)) != request.run_key
    assert SensorCursor.from_json(after.cursor).last_run_key == request2.run_key


def test_sensor_never_requests_the_same_content_twice(watched: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    first = tick(instance, None)
    (request,) = first.run_requests
    launched(instance, request)
    cursor = first.cursor

    # Files moved away and back: folders changed, content did not.
    img = sorted((watched / "images" / "val").iterdir())[0]
    img.rename(img.with_name("moved.png"))
    cursor = stored(cursor, tick(instance, cursor))  # the (different) content is looked at...
    img.with_name("moved.png").rename(img)
    result = tick(instance, cursor)
    assert "not launching it twice" in skip_text(result)

    # The cursor is lost (a reset sensor): the run for this content still exists, so no second run.
    again = tick(instance, None)
    assert "already retrained on dataset content" in skip_text(again)

    # A revert after a change: A -> B (requested) -> A: A was trained already.
    add_image(watched, "b_only")
    b = tick(instance, stored(cursor, result))
    (request_b,) = b.run_requests
    launched(instance, request_b)
    for suffix, split in ((".png", "images"), (".txt", "labels")):
        (watched / split / "train" / f"b_only{suffix}").unlink()
    reverted = tick(instance, b.cursor)
    assert run_key_for(content_hash(watched)) == request.run_key
    assert "already retrained" in skip_text(reverted)


def test_sensor_skips_when_production_was_trained_on_this_content(watched: Path) -> None:
    store = job_store()
    job_id = make_production(store, content_hash(watched))
    result = tick(dg.DagsterInstance.ephemeral(), None)
    text = skip_text(result)
    assert f"production model (training job {job_id}" in text and "not retraining" in text
    assert "training recipe" in text
    assert SensorCursor.from_json(result.cursor).watch is not None  # the folder state is kept: next tick is cheap
    # Content changes -> retrain.
    add_image(watched, "fresh")
    (request,) = tick(dg.DagsterInstance.ephemeral(), result.cursor).run_requests
    assert request.run_key == run_key_for(content_hash(watched))


def test_same_data_but_another_recipe_is_retrained(watched: Path) -> None:
    """Skip-when-unchanged compares the fingerprint (data + recipe + code version), not the data alone."""
    make_production(job_store(), content_hash(watched), epochs=3)  # trained by hand with another recipe
    (request,) = tick(dg.DagsterInstance.ephemeral(), None).run_requests
    assert request.run_key == run_key_for(content_hash(watched))


def test_sensor_minimum_interval_between_retrains(watched: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISION_PIPELINE_MIN_RETRAIN_INTERVAL_S", "3600")
    store = job_store()
    store.create_job("training", config={})  # a retrain started just now
    instance = dg.DagsterInstance.ephemeral()
    result = tick(instance, None)
    text = skip_text(result)
    assert "VISION_PIPELINE_MIN_RETRAIN_INTERVAL_S=3600" in text and "waits" in text
    assert SensorCursor.from_json(result.cursor).pending
    monkeypatch.setenv("VISION_PIPELINE_MIN_RETRAIN_INTERVAL_S", "0")
    (request,) = tick(instance, result.cursor).run_requests  # nothing changed on disk: the pending change
    assert request.run_key == run_key_for(content_hash(watched))


def test_sensor_skips_a_disappearing_folder_without_crashing(watched: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    first = tick(instance, None)
    shutil.rmtree(watched)
    for _ in range(2):  # every tick: a reason, not an exception; the cursor is kept
        result = tick(instance, first.cursor)
        assert "does not exist" in skip_text(result) and result.cursor is None


def test_sensor_waits_for_half_written_files(watched: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISION_PIPELINE_WATCH_SETTLE_S", "30")
    instance = dg.DagsterInstance.ephemeral()
    first = tick(instance, None)
    launched(instance, first.run_requests[0])
    growing = watched / "images" / "train" / "incoming.png"
    growing.write_bytes(b"\x89PNG\r\n")  # being copied
    result = tick(instance, first.cursor)
    assert "still being written" in skip_text(result) and "incoming.png" in skip_text(result)
    assert result.cursor is None  # not advanced past it
    shutil.copy2(sorted((watched / "images" / "train").iterdir())[0], growing)
    shutil.copy2(sorted((watched / "labels" / "train").iterdir())[0], watched / "labels" / "train" / "incoming.txt")
    age(watched)  # the copy finished long enough ago
    (request,) = tick(instance, first.cursor).run_requests
    assert request.run_key == run_key_for(content_hash(watched))


def test_sensor_skips_an_invalid_dataset_until_the_next_change(watched: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    good = (watched / "data.yaml").read_text()
    (watched / "data.yaml").write_text("names: [a]\ntrain: images/train\n")  # no val split
    age(watched)
    result = tick(instance, None)
    assert "not a usable YOLO dataset" in skip_text(result) and "missing required split 'val'" in skip_text(result)
    (watched / "data.yaml").unlink()
    (watched / "data.yaml").write_text(good)  # a new file: the folder's mtime moves
    age(watched)
    assert tick(instance, result.cursor).run_requests


@pytest.fixture
def shared_watched(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A watched dataset the ``nobody`` user can reach (see test_watch.run_as_nobody)."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="vp-sensor-"))
    os.chmod(base, 0o755)
    src = base / "ds"
    generate_synthetic_dataset(src, n_train=4, n_val=2, imgsz=32)
    age(src)
    monkeypatch.setenv("VISION_PIPELINE_WATCH_DIR", str(src))
    monkeypatch.setenv("VISION_PIPELINE_MIN_RETRAIN_INTERVAL_S", "0")
    yield src
    for dirpath, dirs, files in os.walk(base):
        for d in dirs:
            os.chmod(os.path.join(dirpath, d), 0o755)
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o644)
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("target", ["file", "folder"])
def test_sensor_skips_on_permission_denied(shared_watched: Path, target: str) -> None:
    """Real denial: the tick runs as uid 65534 (root ignores chmod 000)."""
    if target == "file":
        os.chmod(sorted((shared_watched / "labels" / "train").iterdir())[0], 0o000)
    else:
        os.chmod(shared_watched / "images" / "val", 0o000)
    instance = dg.DagsterInstance.ephemeral()

    def evaluate() -> tuple[str, str | None]:
        result = tick(instance, None)
        return skip_text(result), result.cursor

    text, cursor = run_as_nobody(evaluate)
    assert "permission denied" in text, text
    if target == "file":
        assert "labels/train" in text and "trying again next tick" in text
        assert SensorCursor.from_json(cursor).pending  # a chmod moves no mtime: it looks again next tick
    else:
        assert "images/val" in text and cursor is None


def test_sensor_refuses_to_retrain_with_a_bad_tolerance(watched: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISION_PIPELINE_PROMOTION_TOLERANCE", "1.5")
    result = tick(dg.DagsterInstance.ephemeral(), None)
    assert "VISION_PIPELINE_PROMOTION_TOLERANCE='1.5' is outside [0, 1]" in skip_text(result)


# ---------------------------------------------------------------------------------------- schedule


def schedule_tick(instance: dg.DagsterInstance):
    schedule = build_retrain_schedule(ScheduleSettings())
    with dg.build_schedule_context(instance=instance, resources={"job_records": JobRecordsResource()}) as context:
        return schedule.evaluate_tick(context)


def test_schedule_settings_and_bad_cron(monkeypatch: pytest.MonkeyPatch) -> None:
    default = schedule_settings_from_env({})
    assert default == ScheduleSettings("0 3 * * 1", False)
    assert build_retrain_schedule(default).default_status == dg.DefaultScheduleStatus.STOPPED
    on = schedule_settings_from_env({"VISION_PIPELINE_SCHEDULE_ENABLED": "1", "VISION_PIPELINE_RETRAIN_CRON": "0 4 * * *"})
    schedule = build_retrain_schedule(on)
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING and schedule.cron_schedule == "0 4 * * *"
    for bad in ("every monday", "61 3 * * 1", "0 3 * *"):
        with pytest.raises(AutomationSettingsError, match=r"VISION_PIPELINE_RETRAIN_CRON=.* is not a valid cron"):
            schedule_settings_from_env({"VISION_PIPELINE_RETRAIN_CRON": bad})
    with pytest.raises(AutomationSettingsError, match="VISION_PIPELINE_SCHEDULE_ENABLED"):
        schedule_settings_from_env({"VISION_PIPELINE_SCHEDULE_ENABLED": "maybe"})


def test_schedule_skips_unchanged_content_and_retrains_changed(watched: Path) -> None:
    store = job_store()
    job_id = make_production(store, content_hash(watched))
    with dg.instance_for_test() as instance:  # a schedule context needs a persistent instance
        skip = schedule_tick(instance).skip_message
        assert f"training job {job_id}" in skip and "not retraining" in skip
        add_image(watched, "weekly")
        (request,) = schedule_tick(instance).run_requests
    assert request.run_key == run_key_for(content_hash(watched)) and request.tags["vision_pipeline/trigger"] == "schedule"
    assert request.run_config["ops"]["dataset"]["config"]["source"] == str(watched)


def test_synthetic_hash_matches_the_dataset_asset(tmp_path: Path) -> None:
    """The schedule's 'unchanged' rule for the synthetic default compares the hash the asset records."""
    from vision_pipeline.defs.dataset import DatasetConfig

    cfg = DatasetConfig(synthetic_train_images=6, synthetic_val_images=3, synthetic_imgsz=32, seed=3)
    staged = prepare_dataset(tmp_path / "staged", None, synthetic_kwargs={
        "n_train": 6, "n_val": 3, "imgsz": 32, "seed": 3})
    assert synthetic_dataset_hash(cfg) == staged.content_hash


# -------------------------------------------------------------------------------- promotion logic


def test_tolerance_setting() -> None:
    assert promotion_tolerance({}) == 0.02
    assert promotion_tolerance({"VISION_PIPELINE_PROMOTION_TOLERANCE": "0.1"}) == 0.1
    for bad in ("-0.01", "1.5", "lots", "nan"):
        with pytest.raises(PromotionSettingsError, match="VISION_PIPELINE_PROMOTION_TOLERANCE"):
            promotion_tolerance({"VISION_PIPELINE_PROMOTION_TOLERANCE": bad})


def test_gate_decisions() -> None:
    assert decide(0.4, None, 0.02).promoted
    assert "first model" in decide(0.4, None, 0.02).reason
    assert decide(0.61, 0.60, 0.02).promoted
    assert decide(0.59, 0.60, 0.02).promoted  # within the tolerance
    worse = decide(0.50, 0.60, 0.02, baseline_training_job_id=7)
    assert not worse.promoted and "regression beyond the tolerance" in worse.reason and "training job 7" in worse.reason
    assert not decide(0.59, 0.60, 0.0).promoted
    with pytest.raises(PromotionSettingsError):
        decide(0.5, 0.5, 2.0)


def _promote(store: JobStore, job_id: int, map50: float, baseline: float | Exception | None = None, **kw: Any):
    def evaluate_baseline(_production):
        if isinstance(baseline, Exception):
            raise baseline
        return baseline

    return promote(store, Candidate(job_id, dataset_hash=f"hash-{job_id}", clearml_task_id=f"offline-{job_id}"),
                   tolerance=kw.get("tolerance", 0.02), evaluate_candidate=lambda: map50,
                   evaluate_baseline=evaluate_baseline)


def test_promotion_records_first_better_worse_and_retries() -> None:
    store = job_store()
    a, b, c = (store.create_job("training", config={}) for _ in range(3))

    first = _promote(store, a, 0.50)
    assert first.decision.promoted and first.record.is_current and first.record.replaces_training_job_id is None

    better = _promote(store, b, 0.60, baseline=0.50)
    assert better.decision.promoted and better.record.replaces_training_job_id == a
    assert better.retired.training_job_id == a and better.retired.retired_at is not None
    assert current_production(store).training_job_id == b

    worse = _promote(store, c, 0.40, baseline=0.60)
    assert not worse.decision.promoted and not worse.record.is_current
    assert "regression" in worse.record.reason and worse.record.baseline_map50 == 0.60
    assert worse.production.training_job_id == b and current_production(store).training_job_id == b

    # Retries: the production job is left alone; the rejected one is decided again in its own row.
    retry = _promote(store, b, 0.99, baseline=0.0)
    assert retry.already_production and retry.record.map50 == 0.60
    again = _promote(store, c, 0.40, baseline=0.60)
    assert not again.decision.promoted and again.record.id == worse.record.id

    rows = list_promotions(store)
    assert [r.training_job_id for r in rows] == [a, b, c]
    assert [r.is_current for r in rows] == [False, True, False]
    assert rows[0].retired_at is not None and rows[1].retired_at is None


def test_promotion_refuses_when_production_changed_meanwhile() -> None:
    store = job_store()
    a, b, c = (store.create_job("training", config={}) for _ in range(3))
    _promote(store, a, 0.5)

    def sneaky_baseline(_production):
        _promote(store, b, 0.9, baseline=0.5)  # another promotion lands during the evaluation
        return 0.5

    with pytest.raises(PromotionError, match="production changed while training job"):
        promote(store, Candidate(c), tolerance=0.02, evaluate_candidate=lambda: 0.7, evaluate_baseline=sneaky_baseline)
    assert current_production(store).training_job_id == b
    assert [r.training_job_id for r in list_promotions(store)] == [a, b]


def test_incompatible_production_model_promotes_with_the_reason() -> None:
    store = job_store()
    a, b = (store.create_job("training", config={}) for _ in range(2))
    _promote(store, a, 0.5)
    out = _promote(store, b, 0.3, baseline=IncompatibleModelError("checkpoint classes ['x'] differ"))
    assert out.decision.promoted and "no comparable baseline" in out.record.reason


def test_decision_is_a_clearml_task_offline() -> None:
    store = job_store()
    a, b = (store.create_job("training", config={}) for _ in range(2))
    _promote(store, a, 0.6)
    outcome = _promote(store, b, 0.3, baseline=0.6)
    published = publish_decision(ClearMLTracker(ClearMLConfig()), outcome)
    assert not published.tagged_online
    session = session_for_task(settings.clearml_dir() / "offline", published.task_id)
    assert session.name == f"Promotion Job {outcome.record.id} - training job {b} rejected"
    assert {"promotion", "rejected", f"training-job:{b}"} <= set(session.task["tags"])
    props = session.hyperparams["properties"]
    assert props["decision"] == "rejected" and "regression" in props["reason"] and props["production_training_job_id"] == str(a)
    assert session.final_status == "completed"


# ------------------------------------------------------------------ the production_model asset (real)


def _assets():
    from vision_pipeline.defs.dataset import dataset, dataset_is_valid
    from vision_pipeline.defs.export import export_parity, exported_model
    from vision_pipeline.defs.promotion import production_model, promotion_gate
    from vision_pipeline.defs.training import map50_quality_gate, trained_checkpoint

    return [dataset, trained_checkpoint, exported_model, production_model,
            dataset_is_valid, map50_quality_gate, export_parity, promotion_gate]


def run_assets(selection: list[str], instance: dg.DagsterInstance, run_config: dg.RunConfig | None = None):
    from vision_pipeline.defs.resources import resources_from_env
    from vision_pipeline_tests.pipeline_helpers import tiny_run_config

    ops = (run_config or tiny_run_config()).ops
    config = dg.RunConfig(ops={name: value for name, value in ops.items() if name in selection})
    return dg.materialize(_assets(), selection=selection, run_config=config,
                          instance=instance, resources=resources_from_env(), raise_on_error=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """One real tiny training (dataset -> checkpoint -> export) on a watched folder, shared by the module."""
    pytest.importorskip("vision_pipeline.vision.export", reason="the export stage is not in this tree yet")
    from vision_pipeline_tests.pipeline_helpers import latest_metadata, tiny_run_config

    home = tmp_path_factory.mktemp("promotion_home")
    src = tmp_path_factory.mktemp("promotion_src") / "ds"
    generate_synthetic_dataset(src, n_train=64, n_val=16, imgsz=64)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISION_PIPELINE_HOME", str(home))
        for name in ("CLEARML_API_HOST", "VISION_PIPELINE_DATABASE_URL", "VISION_PIPELINE_S3_BUCKET"):
            mp.delenv(name, raising=False)
        instance = dg.DagsterInstance.ephemeral()
        config = tiny_run_config(src)
        result = run_assets(["dataset", "trained_checkpoint", "exported_model"], instance, config)
        failures = [str(e.event_specific_data.error.message) for e in result.all_events
                    if e.event_type_value == "STEP_FAILURE"]
        assert result.success, f"the tiny training run failed: {failures}"
        yield {"home": home, "src": src, "instance": instance, "config": config,
               "trained": latest_metadata(instance, "trained_checkpoint")}


@pytest.fixture
def promo(trained, monkeypatch: pytest.MonkeyPatch):
    """The shared run's home, with the promotion table emptied (each test sets up the production it needs)."""
    monkeypatch.setenv("VISION_PIPELINE_HOME", str(trained["home"]))
    store = job_store()
    with store.session() as s:
        s.execute(delete(ModelPromotion))
    return {**trained, "store": store}


def _promote_asset(promo) -> tuple[dg.ExecuteInProcessResult, dict[str, Any]]:
    result = run_assets(["production_model"], promo["instance"], promo["config"])
    events = result.get_asset_materialization_events()
    md = {k: v.value for k, v in events[0].materialization.metadata.items()} if events else {}
    return result, md


def _fake_production(promo, weights: Path) -> int:
    """A previous training job whose best checkpoint is ``weights``, recorded as production."""
    from vision_pipeline.storage import checkpoint_key, store_from_env

    store = promo["store"]
    job_id = store.create_job("training", config={"imgsz": 64}, dataset_hash="older-dataset")
    store_from_env().put_file(weights, checkpoint_key(job_id, "best"))
    record_decision(store, Candidate(job_id, dataset_hash="older-dataset"), decide(0.0, None, 0.02),
                    expected_production_job_id=None)
    return job_id


def _candidate_weights(promo, tmp_path: Path) -> Path:
    from vision_pipeline.storage import store_from_env

    return store_from_env().get_file(promo["trained"]["best_checkpoint_key"], tmp_path / "candidate.pt")


@pytest.mark.slow
def test_first_model_is_promoted_and_a_retry_adds_nothing(promo, monkeypatch: pytest.MonkeyPatch) -> None:
    result, md = _promote_asset(promo)
    assert result.success
    job_id = promo["trained"]["job_id"]
    assert md["decision"] == "promoted" and "first model" in md["reason"]
    assert md["production_training_job_id"] == job_id and md["candidate_mAP50"] >= 0
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "promotion_gate" and check.passed
    (row,) = list_promotions(promo["store"])
    assert row.training_job_id == job_id and row.is_current and row.dataset_hash == content_hash(promo["src"])
    assert row.clearml_task_id == promo["trained"]["clearml_task_id"]  # what `clearml sync` tags 'production'
    session = session_for_task(settings.clearml_dir() / "offline", md["promotion_clearml_task_id"])
    assert session.hyperparams["properties"]["decision"] == "promoted"

    retry, md2 = _promote_asset(promo)
    assert retry.success and md2["decision"] == "already production"
    assert [r.id for r in list_promotions(promo["store"])] == [row.id]

    # Skip-when-unchanged compares data versions: production's (from its materialisation) is the same data
    # with the tiny test recipe, the sensor's run would use the default recipe -> a different model, retrain.
    assert md2["production_fingerprint"] == promo["trained"]["fingerprint"] == md2["candidate_fingerprint"]
    monkeypatch.setenv("VISION_PIPELINE_WATCH_DIR", str(promo["src"]))
    monkeypatch.setenv("VISION_PIPELINE_MIN_RETRAIN_INTERVAL_S", "0")
    age(promo["src"])
    (request,) = tick(promo["instance"], None).run_requests
    assert request.tags[TAG_DATASET_HASH] == row.dataset_hash
    assert request.run_key == run_key_for(row.dataset_hash) != md2["production_fingerprint"]


@pytest.mark.slow
def test_better_model_replaces_production(promo, tmp_path: Path) -> None:
    import torch

    ckpt = torch.load(_candidate_weights(promo, tmp_path), map_location="cpu", weights_only=False)
    for key in ("model", "ema"):
        if ckpt.get(key) is not None:
            for p in ckpt[key].parameters():
                p.data.zero_()  # a model that detects nothing
    broken = tmp_path / "broken.pt"
    torch.save(ckpt, broken)
    old = _fake_production(promo, broken)
    result, md = _promote_asset(promo)
    assert result.success and md["decision"] == "promoted", md.get("reason")
    assert md["baseline_mAP50"] == 0.0 and md["candidate_mAP50"] >= md["baseline_mAP50"]
    assert md["replaces_training_job_id"] == old
    rows = {r.training_job_id: r for r in list_promotions(promo["store"])}
    assert rows[old].is_current is False and rows[old].retired_at is not None
    assert rows[promo["trained"]["job_id"]].is_current
    assert sum(r.is_current for r in rows.values()) == 1


@pytest.mark.slow
def test_worse_model_is_rejected_and_stays_available(promo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Production is the same checkpoint, made to score 0.5 higher (a better production model costs a
    longer training than this test may take); the candidate's mAP50 is measured for real."""
    import vision_pipeline.defs.promotion as promotion_defs

    real = promotion_defs.evaluate_map50
    monkeypatch.setattr(promotion_defs, "evaluate_map50",
                        lambda weights, *a, **kw: real(weights, *a, **kw) + (0.5 if Path(weights).name == "production.pt" else 0.0))
    old = _fake_production(promo, _candidate_weights(promo, tmp_path))
    result, md = _promote_asset(promo)
    assert result.success  # a rejection is a decision, not a failure
    assert md["decision"] == "rejected" and "regression beyond the tolerance" in md["reason"]
    assert md["production_training_job_id"] == old
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN and "rejected" in check.description
    store = promo["store"]
    assert current_production(store).training_job_id == old
    from vision_pipeline.storage import store_from_env

    assert store_from_env().exists(promo["trained"]["best_checkpoint_key"])  # still available
    session = session_for_task(settings.clearml_dir() / "offline", md["promotion_clearml_task_id"])
    assert session.hyperparams["properties"]["decision"] == "rejected"
    assert "regression" in session.hyperparams["properties"]["reason"]

    retry, md2 = _promote_asset(promo)  # decided again, in the same row
    assert md2["decision"] == "rejected"
    assert sorted(r.training_job_id for r in list_promotions(store)) == sorted([old, promo["trained"]["job_id"]])


@pytest.mark.slow
def test_bad_tolerance_promotes_nothing(promo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISION_PIPELINE_PROMOTION_TOLERANCE", "-1")
    result, md = _promote_asset(promo)
    assert not result.success and not md
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "VISION_PIPELINE_PROMOTION_TOLERANCE='-1' is outside [0, 1]" in str(failure.event_specific_data.error)
    assert list_promotions(promo["store"]) == []


def test_promotion_requires_the_checks_to_have_passed() -> None:
    from vision_pipeline.defs.promotion import require_checks_passed

    with pytest.raises(dg.Failure, match="map50_quality_gate.*has no result"):
        require_checks_passed(dg.DagsterInstance.ephemeral())
