"""The production configuration: Dagster and job records on the real PostgreSQL, artifacts in S3.

S3 is moto's server on loopback (no real S3 exists on the test machines); ClearML stays offline
(no ClearML server can run here — it needs MongoDB and Elasticsearch).
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from vision_pipeline import settings
from vision_pipeline.records.store import JobStore
from vision_pipeline.tracking.session_reader import session_for_task
from vision_pipeline_tests.pipeline_helpers import ALL_ASSETS, latest_metadata, materialize, tiny_run_config
from vision_pipeline_tests.s3_fixture import MOTO_ACCESS_KEY_ID, MOTO_REGION, moto_client

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.s3]

PG_SECRET = "pgSeCrEt93x"
AWS_SECRET = "awsSeCrEt41f"


def _assert_no_secret_anywhere(instance: dg.DagsterInstance, run_id: str, rows: list) -> None:
    """Secrets never reach ClearML (hyperparameters, logs, artifacts), Dagster events/metadata or job rows."""
    haystacks = {"job rows": json.dumps(rows, default=str)}
    haystacks["dagster events"] = "\n".join(repr(e) for e in instance.all_logs(run_id))
    for path in settings.clearml_dir().rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".txt", ""):
            haystacks[str(path)] = path.read_text(errors="replace")
    for name, text in haystacks.items():
        for secret in (PG_SECRET, AWS_SECRET):
            assert secret not in text, f"secret leaked into {name}"


def _postgres_instance(url: str, tmp_path: Path) -> dg.DagsterInstance:
    """A Dagster instance whose run, event-log and schedule storage live in PostgreSQL (dagster-postgres)."""
    home = tmp_path / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(
        "storage:\n  postgres:\n    postgres_url:\n      env: DAGSTER_POSTGRES_URL\ntelemetry:\n  enabled: false\n"
    )
    return dg.DagsterInstance.from_config(str(home))


@pytest.fixture
def production_env(monkeypatch, postgres_url: str, moto_s3_endpoint: str, s3_bucket: str, tmp_path: Path):
    # Trust auth ignores passwords, so a password in the URL is a secret we can look for afterwards.
    secret_url = postgres_url.replace("postgres@", f"postgres:{PG_SECRET}@")
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", postgres_url)
    monkeypatch.setenv("VISION_PIPELINE_DATABASE_URL", secret_url)
    monkeypatch.setenv("VISION_PIPELINE_S3_BUCKET", s3_bucket)
    monkeypatch.setenv("VISION_PIPELINE_S3_PREFIX", "vp")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_s3_endpoint)
    monkeypatch.setenv("AWS_REGION", MOTO_REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", MOTO_ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)  # moto accepts any key unless auth is enforced
    return {"postgres_url": postgres_url, "bucket": s3_bucket, "endpoint": moto_s3_endpoint,
            "instance": _postgres_instance(postgres_url, tmp_path)}


def test_graph_on_postgres_and_s3(production_env) -> None:
    instance = production_env["instance"]
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    result = materialize(ALL_ASSETS, tiny_run_config(epochs=1), instance)
    assert result.success

    # Read the materialisation events back from PostgreSQL through a fresh instance.
    fresh = _postgres_instance(production_env["postgres_url"], Path(instance.root_directory).parent / "again")
    for key in ALL_ASSETS:
        md = latest_metadata(fresh, key)
        assert md["clearml_task_id"].startswith("offline-")
    training = latest_metadata(fresh, "trained_checkpoint")
    bucket = production_env["bucket"]
    assert training["best_checkpoint"] == f"s3://{bucket}/vp/checkpoints/{training['job_id']}/best.pt"

    # The S3 objects exist with the recorded checksum, under the predecessor's key scheme.
    s3 = moto_client(production_env["endpoint"])
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    export = latest_metadata(fresh, "exported_model")
    assert f"vp/checkpoints/{training['job_id']}/last.pt" in keys
    assert any(k.startswith(f"vp/exports/{export['job_id']}/onnx/") for k in keys)
    assert any(k.startswith(f"vp/inference/{latest_metadata(fresh, 'inference_outputs')['job_id']}/") for k in keys)

    # ClearML artifacts and the model point at the S3 objects (registered as links, not re-uploaded).
    session = session_for_task(settings.clearml_dir() / "offline", training["clearml_task_id"])
    assert session.artifacts["checkpoint_best"]["uri"] == training["best_checkpoint"]
    (model,) = session.models
    assert model["weights"]["register_uri"] == training["best_checkpoint"]

    # Job rows on PostgreSQL.
    rows = JobStore(production_env["postgres_url"]).list_jobs()
    assert {r["kind"] for r in rows} == {"dataset", "training", "export", "inference"}
    assert all(r["status"] == "completed" for r in rows)
    _assert_no_secret_anywhere(instance, result.run_id, rows)


def test_missing_bucket_fails_cleanly_then_recovers(production_env, monkeypatch) -> None:
    instance = production_env["instance"]
    assert materialize(["dataset"], tiny_run_config(), instance).success
    monkeypatch.setenv("VISION_PIPELINE_S3_BUCKET", "no-such-bucket-here")
    failed = materialize(["trained_checkpoint"], tiny_run_config(epochs=1), instance)
    assert not failed.success
    store = JobStore(production_env["postgres_url"])
    (row,) = store.list_jobs("training")
    assert row["status"] == "failed" and "no-such-bucket-here" in row["error"]
    session = session_for_task(settings.clearml_dir() / "offline", row["clearml_task_id"])
    assert session.final_status == "failed" and session.models == []

    monkeypatch.setenv("VISION_PIPELINE_S3_BUCKET", production_env["bucket"])
    assert materialize(["trained_checkpoint"], tiny_run_config(epochs=1), instance).success
    assert sorted(r["status"] for r in store.list_jobs("training")) == ["completed", "failed"]


def test_job_database_down_at_start_fails_before_any_task(production_env, monkeypatch) -> None:
    monkeypatch.setenv("VISION_PIPELINE_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nowhere")
    result = materialize(["dataset"], tiny_run_config(), production_env["instance"])
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "unreachable" in failure.event_specific_data.error.to_string()
    offline = settings.clearml_dir() / "offline"
    assert not offline.exists() or not list(offline.iterdir()), "no ClearML task may be created without a job row"
