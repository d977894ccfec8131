"""`vision-pipeline doctor` against real backends: SQLite and PostgreSQL job records, moto S3, Postgres for Dagster,
a refused port for an unreachable ClearML server, and the loopback ClearML API stub from ``test_sync`` (a real
ClearML server cannot run on the test machines). No secret may appear in the output."""

from __future__ import annotations

from pathlib import Path

import pytest

from vision_pipeline import doctor
from vision_pipeline.cli import main
from vision_pipeline.records.store import JobStore
from vision_pipeline_tests.s3_fixture import MOTO_ACCESS_KEY_ID, MOTO_REGION
from vision_pipeline_tests.test_sync import ACCESS_KEY, SECRET_KEY, Stub, clearml_stub  # noqa: F401 - fixture

AWS_SECRET = "aws-secret-Zr7-never-printed"


def _lines(capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, str], str]:
    out = capsys.readouterr().out
    by_backend = {line.split()[1]: line for line in out.splitlines() if line.split()[0] in ("ok", "FAIL", "warn", "skip")}
    return by_backend, out


def test_defaults_offline_local_sqlite(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    lines, out = _lines(capsys)
    assert lines["clearml-api"].startswith("skip") and "offline mode (no CLEARML_API_HOST)" in lines["clearml-api"]
    assert lines["job-records"].startswith("ok") and "not created yet" in lines["job-records"]
    assert lines["dagster-storage"].startswith("ok") and "embedded default, DAGSTER_HOME not set" in lines["dagster-storage"]
    assert lines["artifacts"].startswith("ok") and "local directory" in lines["artifacts"]
    assert "checks passed" in out


def test_job_records_at_head_and_behind(db_url: str, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    store = JobStore(db_url)
    store.upgrade("head")
    # A password in the URL (PostgreSQL on the test machine trusts loopback, so it connects regardless).
    url = db_url.replace("postgres@", "postgres:pg-pass-Kd8-never-printed@", 1)
    monkeypatch.setenv("VISION_PIPELINE_DATABASE_URL", url)

    check = doctor.check_job_records()
    assert check.status == "ok" and "(head)" in check.detail

    store.downgrade("-1")
    behind = store.current_revision()
    store.dispose()
    assert main(["doctor"]) == 1
    lines, out = _lines(capsys)
    assert lines["job-records"].startswith("FAIL")
    assert f"at revision {behind}, behind head" in lines["job-records"]
    assert "run `vision-pipeline db upgrade`" in lines["job-records"]
    assert "pg-pass-Kd8-never-printed" not in out


def test_job_records_unreachable_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISION_PIPELINE_DATABASE_URL", "postgresql://vp:db-pass-Qm2@127.0.0.1:9/jobs")
    check = doctor.check_job_records()
    assert check.status == "FAIL" and "unreachable" in check.detail and "db-pass-Qm2" not in check.line()


def test_unreachable_clearml_server(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CLEARML_API_HOST", "http://127.0.0.1:9")
    monkeypatch.setenv("CLEARML_FILES_HOST", "http://127.0.0.1:9")
    monkeypatch.setenv("CLEARML_API_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("CLEARML_API_SECRET_KEY", SECRET_KEY)
    assert main(["doctor"]) == 1
    lines, out = _lines(capsys)
    assert lines["clearml-api"].startswith("FAIL")
    assert "http://127.0.0.1:9 is unreachable (connection refused)" in lines["clearml-api"]
    assert "set CLEARML_OFFLINE_MODE=1" in lines["clearml-api"]
    assert lines["clearml-files"].startswith("FAIL") and "CLEARML_FILES_HOST" in lines["clearml-files"]
    assert lines["clearml-web"].startswith("skip")
    assert SECRET_KEY not in out and ACCESS_KEY not in out


def test_clearml_ok_with_ping_time_then_wrong_keys(clearml_stub: Stub, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CLEARML_API_HOST", clearml_stub.url)
    monkeypatch.setenv("CLEARML_WEB_HOST", clearml_stub.url)
    monkeypatch.setenv("CLEARML_API_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("CLEARML_API_SECRET_KEY", SECRET_KEY)
    assert main(["doctor"]) == 0
    lines, _ = _lines(capsys)
    assert lines["clearml-api"].startswith("ok")
    assert f"{clearml_stub.url} debug.ping " in lines["clearml-api"] and " ms, credentials accepted" in lines["clearml-api"]
    assert lines["clearml-web"].startswith("ok") and "HTTP 200" in lines["clearml-web"]

    monkeypatch.setenv("CLEARML_API_SECRET_KEY", "wrong-secret-Hh3")
    assert main(["doctor"]) == 1
    lines, out = _lines(capsys)
    assert lines["clearml-api"].startswith("FAIL") and "rejected the credentials" in lines["clearml-api"]
    assert "CLEARML_API_ACCESS_KEY / CLEARML_API_SECRET_KEY" in lines["clearml-api"]
    assert "wrong-secret-Hh3" not in out and ACCESS_KEY not in out


def test_clearml_host_that_is_not_an_api_server(moto_s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEARML_API_HOST", moto_s3_endpoint)  # answers HTTP, but not ClearML
    monkeypatch.setenv("CLEARML_API_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("CLEARML_API_SECRET_KEY", SECRET_KEY)
    (api, _web, _files) = doctor.check_clearml()
    assert api.status == "FAIL" and "is not a ClearML API server" in api.detail


def test_host_without_keys(monkeypatch: pytest.MonkeyPatch, clearml_stub: Stub) -> None:  # noqa: F811
    monkeypatch.setenv("CLEARML_API_HOST", clearml_stub.url)
    api = doctor.check_clearml()[0]
    assert api.status == "FAIL" and "CLEARML_API_ACCESS_KEY / CLEARML_API_SECRET_KEY are not" in api.detail


def _s3_env(monkeypatch: pytest.MonkeyPatch, endpoint: str, bucket: str) -> None:
    monkeypatch.setenv("VISION_PIPELINE_S3_BUCKET", bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_REGION", MOTO_REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", MOTO_ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)  # moto accepts any secret unless auth is enforced


def test_s3_bucket_ok_and_wrong_bucket(moto_s3_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    _s3_env(monkeypatch, moto_s3_endpoint, s3_bucket)
    assert main(["doctor"]) == 0
    lines, _ = _lines(capsys)
    assert lines["artifacts"].startswith("ok") and s3_bucket in lines["artifacts"]

    monkeypatch.setenv("VISION_PIPELINE_S3_BUCKET", "vp-no-such-bucket-0001")
    assert main(["doctor"]) == 1
    lines, out = _lines(capsys)
    assert lines["artifacts"].startswith("FAIL") and "vp-no-such-bucket-0001" in lines["artifacts"]
    assert AWS_SECRET not in out


def test_dagster_home_sqlite_and_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "missing"))
    check = doctor.check_dagster_storage()
    assert check.status == "FAIL" and "does not exist: create it" in check.detail

    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    check = doctor.check_dagster_storage()
    assert check.status == "ok" and "SQLite storage" in check.detail

    (home / "dagster.yaml").write_text("storage: [unclosed\n")
    check = doctor.check_dagster_storage()
    assert check.status == "FAIL" and "cannot be read" in check.detail


def test_dagster_postgres_storage(postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("storage:\n  postgres:\n    postgres_url:\n      env: DAGSTER_PG_URL\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    check = doctor.check_dagster_storage()
    assert check.status == "FAIL" and "export DAGSTER_PG_URL" in check.detail

    secret_url = postgres_url.replace("postgres@", "postgres:dg-pass-Wf4@", 1)
    monkeypatch.setenv("DAGSTER_PG_URL", secret_url)
    assert main(["doctor"]) == 0
    lines, out = _lines(capsys)
    assert lines["dagster-storage"].startswith("ok") and "postgres postgresql://postgres:***@" in lines["dagster-storage"]
    assert "Dagster creates its tables on first start" in lines["dagster-storage"]
    assert "dg-pass-Wf4" not in out

    (home / "dagster.yaml").write_text(
        "storage:\n  postgres:\n    postgres_db:\n      username: dagster\n      password: dg-pass-Wf4\n"
        "      hostname: 127.0.0.1\n      port: 9\n      db_name: dagster\n")
    check = doctor.check_dagster_storage()
    assert check.status == "FAIL" and "start PostgreSQL" in check.detail and "dg-pass-Wf4" not in check.line()


def test_no_secret_in_any_line(moto_s3_endpoint: str, s3_bucket: str, clearml_stub: Stub,  # noqa: F811
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Every backend configured with secrets, some failing: the lines never carry a secret value."""
    _s3_env(monkeypatch, moto_s3_endpoint, s3_bucket)
    monkeypatch.setenv("CLEARML_API_HOST", clearml_stub.url)
    monkeypatch.setenv("CLEARML_FILES_HOST", "http://127.0.0.1:9")
    monkeypatch.setenv("CLEARML_API_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("CLEARML_API_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("VISION_PIPELINE_DATABASE_URL", "postgresql://vp:db-pass-Qm2@127.0.0.1:9/jobs")
    lines, code = doctor.report()
    text = "\n".join(lines)
    assert code == 1
    for secret in (SECRET_KEY, AWS_SECRET, "db-pass-Qm2"):
        assert secret not in text
