"""Job records and their Alembic migrations, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from vision_pipeline.records import migrate
from vision_pipeline.records.models import Base, MLflowImport
from vision_pipeline.records.store import JobStore, RecordsError


def test_job_lifecycle(db_url: str) -> None:
    store = JobStore(db_url)
    store.ensure_schema()
    job = store.create_job("training", config={"epochs": 3}, dagster_run_id="run-1", model_name="yolo11n.yaml")
    assert store.get_job("training", job)["status"] == "pending"
    store.start_job("training", job, clearml_task_id="offline-abc")
    row = store.get_job("training", job)
    assert (row["status"], row["clearml_task_id"]) == ("running", "offline-abc")
    assert row["started_at"]
    store.complete_job("training", job, {"mAP50": 0.9})
    row = store.get_job("training", job)
    assert row["status"] == "completed" and row["result"] == {"mAP50": 0.9} and row["finished_at"]
    assert [r["id"] for r in store.list_jobs("training")] == [job]
    assert store.find_by_clearml_task("offline-abc")[0]["id"] == job


def test_retry_of_same_run_reuses_unfinished_row(db_url: str) -> None:
    store = JobStore(db_url)
    store.ensure_schema()
    first = store.create_job("export", dagster_run_id="run-7")
    store.fail_job("export", first, "ValueError: boom")
    again = store.create_job("export", dagster_run_id="run-7")
    assert again == first
    row = store.get_job("export", again)
    assert row["status"] == "pending" and row["error"] is None
    store.complete_job("export", again, {})
    assert store.create_job("export", dagster_run_id="run-7") != first  # a completed row is never reused
    assert len(store.list_jobs("export")) == 2


def test_remap_clearml_task_ids(db_url: str) -> None:
    store = JobStore(db_url)
    store.ensure_schema()
    a = store.create_job("training")
    store.start_job("training", a, clearml_task_id="offline-1")
    b = store.create_job("inference")
    store.start_job("inference", b, clearml_task_id="offline-1")
    with store.session() as s:
        s.add(MLflowImport(mlflow_run_id="abc", clearml_task_id="offline-1", status="imported"))
    assert store.remap_clearml_task_id("offline-1", "server-1") == 3
    assert store.get_job("inference", b)["clearml_task_id"] == "server-1"
    with store.session() as s:
        assert s.query(MLflowImport).one().clearml_task_id == "server-1"


def test_models_match_migrated_schema(db_url: str) -> None:
    store = JobStore(db_url)
    store.upgrade("head")
    inspector = inspect(store.engine)
    for table in Base.metadata.sorted_tables:
        migrated = {c["name"] for c in inspector.get_columns(table.name)}
        assert migrated == {c.name for c in table.columns}, table.name
    indexed = {tuple(ix["column_names"]) for ix in inspector.get_indexes("training_jobs")}
    assert ("clearml_task_id",) in indexed and ("mlflow_run_id",) in indexed


def test_round_trip_keeps_rows_and_clearml_links(db_url: str) -> None:
    """upgrade -> downgrade 0001 (the rollback) -> upgrade on a database that holds rows."""
    store = JobStore(db_url)
    store.upgrade("head")
    job = store.create_job("training", model_name="yolo11n.yaml")
    store.start_job("training", job, clearml_task_id="task-123")
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE training_jobs SET mlflow_run_id = 'mlf-1' WHERE id = :i"), {"i": job})

    assert store.downgrade("0001") == "0001"
    columns = {c["name"] for c in inspect(store.engine).get_columns("training_jobs")}
    assert "clearml_task_id" not in columns
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT mlflow_run_id FROM training_jobs")).scalar_one() == "mlf-1"

    assert store.upgrade("head") == migrate.head()
    row = store.get_job("training", job)
    assert row["clearml_task_id"] == "task-123" and row["mlflow_run_id"] == "mlf-1"


def test_downgrade_to_base_and_back(db_url: str) -> None:
    store = JobStore(db_url)
    store.upgrade("head")
    assert store.downgrade("base") is None
    assert not inspect(store.engine).has_table("training_jobs")
    assert store.upgrade() == migrate.head()


def test_unknown_migration_target_is_named(db_url: str) -> None:
    store = JobStore(db_url)
    with pytest.raises(RecordsError, match=r"unknown migration target 'nope'.*0001"):
        store.upgrade("nope")


def test_schema_behind_without_auto_migrate(tmp_path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'j.sqlite'}")
    with pytest.raises(RecordsError, match="vision-pipeline db upgrade"):
        store.ensure_schema(auto_migrate=False)


def test_unreachable_postgres_is_explained() -> None:
    store = JobStore("postgresql://postgres:s3cret@127.0.0.1:1/nothing", connect_timeout=1)
    with pytest.raises(RecordsError) as err:
        store.ping()
    message = str(err.value)
    assert "unreachable" in message and "VISION_PIPELINE_DATABASE_URL" in message
    assert "s3cret" not in message


def test_wrong_database_name_is_explained(postgres_url: str) -> None:
    store = JobStore(postgres_url.rsplit("/", 1)[0] + "/no_such_db_here")
    with pytest.raises(RecordsError, match="does not exist"):
        store.ping()


def test_wrong_credentials_are_explained(postgres_url: str) -> None:
    """Trust auth accepts any password, so an unknown role is the credential failure we can produce."""
    store = JobStore(postgres_url.replace("postgres@", "nobody_here:pw@"))
    with pytest.raises(RecordsError, match="credentials"):
        store.ping()
