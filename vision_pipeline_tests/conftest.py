"""Shared fixtures: an isolated project home per test, and real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["vision_pipeline_tests.s3_fixture"]

PG_ADMIN_DSN = os.environ.get("VISION_PIPELINE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

_ENV_TO_CLEAR = (
    "CLEARML_API_HOST", "CLEARML_WEB_HOST", "CLEARML_FILES_HOST", "CLEARML_API_ACCESS_KEY",
    "CLEARML_API_SECRET_KEY", "CLEARML_OFFLINE_MODE", "VISION_PIPELINE_DATABASE_URL",
    "VISION_PIPELINE_S3_BUCKET", "DAGSTER_HOME",
)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own project home; no test touches the working copy or a real server."""
    home = tmp_path / "vp_home"
    monkeypatch.setenv("VISION_PIPELINE_HOME", str(home))
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    for name in _ENV_TO_CLEAR:
        if name == "CLEARML_API_HOST" and os.environ.get("VISION_PIPELINE_LIVE_CLEARML"):
            continue  # the live-server integration test keeps the configured server
        monkeypatch.delenv(name, raising=False)
    return home


def _admin_connection():
    import psycopg2

    conn = psycopg2.connect(PG_ADMIN_DSN, connect_timeout=3)
    conn.autocommit = True
    return conn


def _postgres_available() -> str | None:
    try:
        _admin_connection().close()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable" here
        return str(exc).strip().splitlines()[0]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throwaway database on the real PostgreSQL at 127.0.0.1:5432, dropped afterwards.

    In CI (CI=true) an unreachable server fails the test loudly; on a laptop it skips with the reason.
    """
    problem = _postgres_available()
    if problem:
        message = f"PostgreSQL at {PG_ADMIN_DSN} is unreachable: {problem}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    name = f"vp_test_{uuid.uuid4().hex[:12]}"
    conn = _admin_connection()
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The job-record database, once on SQLite and once on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    return request.getfixturevalue("postgres_url")
