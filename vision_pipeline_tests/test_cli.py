"""The `vision-pipeline` console script, run as a user would (subprocess), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vision_pipeline.records import migrate
from vision_pipeline.records.store import JobStore


def cli(*args: str, db: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if db:
        env["VISION_PIPELINE_DATABASE_URL"] = db
    return subprocess.run([sys.executable, "-m", "vision_pipeline.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_db_round_trip_keeps_rows(db_url: str) -> None:
    assert cli("db", "upgrade", db=db_url).returncode == 0
    store = JobStore(db_url)
    job = store.create_job("training", model_name="yolo11n.yaml")
    store.start_job("training", job, clearml_task_id="offline-42")
    down = cli("db", "downgrade", "base", db=db_url)
    assert down.returncode == 0 and "base" in down.stdout
    assert cli("db", "upgrade", db=db_url).returncode == 0
    current = cli("db", "current", db=db_url)
    assert migrate.head() in current.stdout and "up to date" in current.stdout


def test_rollback_to_0001_and_back_keeps_clearml_ids(db_url: str) -> None:
    cli("db", "upgrade", db=db_url)
    store = JobStore(db_url)
    job = store.create_job("export")
    store.start_job("export", job, clearml_task_id="offline-7")
    assert cli("db", "downgrade", "0001", db=db_url).returncode == 0
    assert cli("db", "upgrade", db=db_url).returncode == 0
    assert store.get_job("export", job)["clearml_task_id"] == "offline-7"


def test_jobs_list_json(db_url: str) -> None:
    cli("db", "upgrade", db=db_url)
    store = JobStore(db_url)
    job = store.create_job("inference", config={"conf": 0.25})
    store.fail_job("inference", job, "VisionInputError: x.jpg: cannot decode")
    out = cli("jobs", "list", "--json", db=db_url)
    assert out.returncode == 0
    (row,) = json.loads(out.stdout)
    assert row["kind"] == "inference" and row["status"] == "failed" and "x.jpg" in row["error"]
    text = cli("jobs", "list", db=db_url)
    assert "inference" in text.stdout and "failed" in text.stdout


def test_unknown_revision_is_one_clear_line(tmp_path) -> None:
    out = cli("db", "upgrade", "9999", db=f"sqlite:///{tmp_path / 'x.sqlite'}")
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: unknown migration target '9999'")
    assert "Traceback" not in out.stderr


def test_unreachable_database_is_one_clear_line() -> None:
    out = cli("db", "current", db="postgresql://postgres:hunter2@127.0.0.1:1/x")
    assert out.returncode == 2 and "unreachable" in out.stderr and "Traceback" not in out.stderr
    assert "hunter2" not in out.stderr + out.stdout
