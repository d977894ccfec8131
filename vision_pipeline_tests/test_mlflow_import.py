"""`mlflow-import` against real MLflow stores (SQLite and the legacy file store) and real offline
ClearML sessions, read back and compared point by point."""

from __future__ import annotations

import hashlib
import io
import json
import math
import shutil
import tempfile
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from vision_pipeline.migration import MLflowImportError, benchmark_import, import_runs
from vision_pipeline.migration import mlflow_import as mi
from vision_pipeline.records.models import MLflowImport
from vision_pipeline.records.store import JobStore
from vision_pipeline.tracking import ClearMLConfig, ClearMLTracker, metric_title_series
from vision_pipeline.tracking.clearml_session import STATUS_FILE
from vision_pipeline.tracking.session_reader import OfflineSession, find_sessions, session_for_task

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric  # noqa: E402

T0 = 1_700_000_000_000  # ms


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite database, copied by every test that needs one.

    MLflow's schema migrations take several seconds, so the empty database is kept in the system temp
    folder (one per MLflow version) and reused by later test sessions; tests only ever copy it.
    """
    cached = Path(tempfile.gettempdir()) / f"vision_pipeline_mlflow_{mlflow.__version__}_empty.db"
    if not cached.is_file():
        fresh = tmp_path_factory.mktemp("mlflow_template") / "empty.db"
        MlflowClient(tracking_uri=f"sqlite:///{fresh}").search_experiments()
        partial = cached.with_suffix(f".{uuid.uuid4().hex}.tmp")
        shutil.copyfile(fresh, partial)
        partial.replace(cached)  # atomic: a parallel session sees the whole file or none
    return cached


@pytest.fixture
def mlflow_sqlite(tmp_path: Path, mlflow_template: Path) -> str:
    db = tmp_path / "mlflow.db"
    shutil.copyfile(mlflow_template, db)
    return f"sqlite:///{db}"


@pytest.fixture
def tracker(tmp_path: Path) -> ClearMLTracker:
    return ClearMLTracker(ClearMLConfig(cache_dir=tmp_path / "clearml"))


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    s = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    s.ensure_schema()
    yield s
    s.dispose()


def _metrics(key: str, values: list[float], start_step: int = 0) -> list[Metric]:
    return [Metric(key, v, T0 + i * 1000, start_step + i) for i, v in enumerate(values)]


def _populate(uri: str, root: Path) -> dict[str, Any]:
    """Two experiments (one non-ASCII), three runs with metric histories, artifacts and a registered model."""
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    src = root / "src"
    (src / "plots" / "curves").mkdir(parents=True)
    (src / "plots" / "curves" / "loss.png").write_bytes(b"\x89PNG" + bytes(range(256)) * 4)
    (src / "weights").mkdir()
    (src / "weights" / "best.pt").write_bytes(b"\x01" * 3000)
    (src / "model").mkdir()
    (src / "model" / "MLmodel").write_text("flavors:\n  pytorch:\n    pytorch_version: 2.0\n")
    (src / "model" / "model.pt").write_bytes(b"\x02" * 1500)
    art = lambda name: (root / "artifacts" / name).as_uri() if uri.startswith("sqlite") else None  # noqa: E731

    det = client.create_experiment("detection", artifact_location=art("det"))
    other = client.create_experiment("expérience ü", artifact_location=art("other"))

    r1 = client.create_run(det, run_name="yolo-baseline", start_time=T0,
                           tags={"team": "cv", "mlflow.user": "alice", "mlflow.source.name": "train.py"})
    rid1 = r1.info.run_id
    client.log_batch(rid1, params=[mlflow.entities.Param(k, v) for k, v in
                                   {"epochs": "100", "lr0": "0.01", "model": "yolo11n"}.items()])
    client.log_batch(rid1, metrics=_metrics("train_loss", [1.0 / (i + 1) for i in range(100)])
                     + _metrics("val_mAP50", [0.01 * i for i in range(0, 100, 2)])
                     + _metrics("lr", [0.01 * 0.9 ** i for i in range(40)], start_step=10))
    client.log_artifacts(rid1, str(src / "plots"), "plots")
    client.log_artifacts(rid1, str(src / "weights"), "weights")
    client.log_artifacts(rid1, str(src / "model"), "model")
    client.set_terminated(rid1, "FINISHED", end_time=T0 + 3_600_000)

    r2 = client.create_run(det, run_name="yolo-crashed", start_time=T0 + 10)
    rid2 = r2.info.run_id
    client.log_batch(rid2, params=[mlflow.entities.Param("epochs", "5")],
                     metrics=_metrics("train_loss", [2.0, 1.5, 1.2]))
    client.set_terminated(rid2, "FAILED", end_time=T0 + 20_000)

    r3 = client.create_run(other, run_name="прогон-1", start_time=T0 + 20, tags={"заметка": "тест"})
    rid3 = r3.info.run_id
    client.log_batch(rid3, params=[mlflow.entities.Param("beschreibung", "äöü ß")],
                     metrics=_metrics("val_Genauigkeit", [0.5 + 0.01 * i for i in range(30)]))
    client.log_artifacts(rid3, str(src / "model"), "model")
    client.set_terminated(rid3, "FINISHED")

    client.create_registered_model("detector")
    v1 = client.create_model_version("detector", source=f"{r1.info.artifact_uri}/model", run_id=rid1)
    with pytest.warns(FutureWarning):
        client.transition_model_version_stage("detector", v1.version, "Production")
    client.set_registered_model_alias("detector", "champion", v1.version)
    client.create_model_version("detector", source=f"{r3.info.artifact_uri}/model", run_id=rid3)
    return {"client": client, "runs": [rid1, rid2, rid3], "src": src}


def _session(tracker: ClearMLTracker, store: JobStore, run_id: str) -> OfflineSession:
    with store.session() as s:
        row = s.scalars(select(MLflowImport).where(MLflowImport.mlflow_run_id == run_id)).one()
        return session_for_task(tracker.offline_root(), row.clearml_task_id)


def _mapping(store: JobStore) -> dict[str, MLflowImport]:
    with store.session() as s:
        return {r.mlflow_run_id: r for r in s.scalars(select(MLflowImport))}


def _props(session: OfflineSession) -> dict[str, str]:
    return {k: v["value"] for k, v in (session.task.get("hyperparams") or {}).get("properties", {}).items()}


def _zip_bytes(session: OfflineSession, suffix: str) -> bytes:
    with zipfile.ZipFile(session.path) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(suffix)]
        return zf.read(name)


def _artifact_bytes(session: OfflineSession, name: str) -> bytes:
    """The stored copy of an artifact, found through the URI the session recorded for it."""
    member = session.artifacts[name]["uri"].split(f"/{session.task_id}/", 1)[1]
    with zipfile.ZipFile(session.path) as zf:
        return zf.read(member)


def _assert_same_history(client: MlflowClient, session: OfflineSession, run_id: str) -> int:
    """Every finite point of every MLflow metric is in the ClearML session, at its step, with its value."""
    compared = 0
    for key in client.get_run(run_id).data.metrics:
        history = client.get_metric_history(run_id, key)
        expected = {m.step: m.value for m in history if math.isfinite(m.value) and abs(m.value) < 1.7e308}
        title, series = metric_title_series(key)
        assert session.series(title, series) == expected, key
        compared += len(expected)
    return compared


# -------------------------------------------------------------------------------------------- tests
def test_import_sqlite_store_point_by_point_and_idempotent(db_url: str, mlflow_sqlite: str, tmp_path: Path,
                                                           tracker: ClearMLTracker) -> None:
    data = _populate(mlflow_sqlite, tmp_path)
    client, (rid1, rid2, rid3) = data["client"], data["runs"]
    store = JobStore(db_url)
    store.ensure_schema()
    job_a = store.create_job("training", mlflow_run_id=rid1, model_name="yolo11n")
    job_b = store.create_job("training", mlflow_run_id=rid1, model_name="yolo11n")
    job_other = store.create_job("training", mlflow_run_id="not-a-migrated-run")

    summary = import_runs(mlflow_sqlite, store=store, tracker=tracker)
    assert (summary.runs_seen, summary.imported, summary.partial, summary.failed) == (3, 3, 0, 0), summary.lines()
    assert summary.ok and summary.job_rows_linked == 2
    assert summary.metric_points == 100 + 50 + 40 + 3 + 30

    s1, s2, s3 = (_session(tracker, store, rid) for rid in (rid1, rid2, rid3))
    assert sum(_assert_same_history(client, s, rid) for s, rid in ((s1, rid1), (s2, rid2), (s3, rid3))) == 223
    # the metric convention: train_loss -> loss/train, lr -> lr/metrics; steps kept (lr starts at 10)
    assert min(s1.series("lr", "metrics")) == 10 and s1.series("loss", "train")[99] == pytest.approx(0.01)

    assert (s1.project, s1.name, s1.final_status) == ("detection", "yolo-baseline", "completed")
    assert (s2.final_status, s2.status["status_reason"]) == ("failed", "MLflow run status FAILED")
    assert (s3.project, s3.name, s3.final_status) == ("expérience ü", "прогон-1", "completed")
    assert s1.hyperparams["General"] == {"epochs": "100", "lr0": "0.01", "model": "yolo11n"}
    assert s3.hyperparams["General"] == {"beschreibung": "äöü ß"}
    assert {"mlflow-import", "team:cv"} <= set(s1.task["tags"]) and "заметка:тест" in s3.task["tags"]
    props = _props(s1)
    assert props["mlflow_run_id"] == rid1 and props["mlflow_experiment"] == "detection"
    assert props["mlflow_start_time"] == "2023-11-14T22:13:20.000+00:00"
    assert props["mlflow_end_time"] == "2023-11-14T23:13:20.000+00:00"
    assert props["mlflow.user"] == "alice" and props["mlflow.source.name"] == "train.py"

    # artifacts: one per file, named by its path in the run, same bytes
    src = data["src"]
    expected = {"plots/curves/loss.png": src / "plots/curves/loss.png", "weights/best.pt": src / "weights/best.pt",
                "model/MLmodel": src / "model/MLmodel", "model/model.pt": src / "model/model.pt"}
    assert set(s1.artifacts) == set(expected)
    for name, path in expected.items():
        artifact = s1.artifacts[name]
        assert artifact["content_size"] == path.stat().st_size
        assert artifact["hash"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert _artifact_bytes(s1, name) == path.read_bytes()

    # registered model versions -> models of the producing run's task, version/stage/alias as tags
    (m1,) = s1.models
    assert m1["init"]["name"] == "detector" and m1["init"]["framework"] == "PyTorch"
    assert {"version:1", "stage:Production", "alias:champion"} <= set(m1["init"]["tags"])
    weights = Path(m1["weights"]["weights_filename"]).name
    assert weights == "detector-v1.zip"
    with zipfile.ZipFile(io.BytesIO(_zip_bytes(s1, f"models/{weights}"))) as zf:
        assert sorted(zf.namelist()) == ["MLmodel", "model.pt"]
        assert zf.read("model.pt") == (src / "model/model.pt").read_bytes()
    (m3,) = s3.models
    assert {"version:2", "stage:None"} <= set(m3["init"]["tags"])
    assert s2.models == []

    # job rows point at the task; the mapping is stored
    rows = _mapping(store)
    assert {r.status for r in rows.values()} == {"imported"} and set(rows) == {rid1, rid2, rid3}
    for job in (job_a, job_b):
        assert store.get_job("training", job)["clearml_task_id"] == s1.task_id
    assert store.get_job("training", job_other)["clearml_task_id"] is None

    # idempotent: a second run imports nothing, creates no task, changes no row
    sessions_before = find_sessions(tracker.offline_root())
    again = import_runs(mlflow_sqlite, store=store, tracker=tracker)
    assert (again.runs_seen, again.imported, again.skipped, again.failed) == (3, 0, 3, 0)
    assert find_sessions(tracker.offline_root()) == sessions_before
    assert {k: (r.clearml_task_id, r.status) for k, r in _mapping(store).items()} == \
        {k: (r.clearml_task_id, r.status) for k, r in rows.items()}
    assert store.get_job("training", job_a)["clearml_task_id"] == s1.task_id
    store.dispose()


def test_file_store_nan_inf_and_long_params(tmp_path: Path, tracker: ClearMLTracker, store: JobStore,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlruns = tmp_path / "mlruns"
    client = MlflowClient(tracking_uri=str(mlruns))
    exp = client.create_experiment("legacy")
    run = client.create_run(exp, run_name="old-run")
    rid = run.info.run_id
    long_value = "x" * 5000
    values = [1.0, float("nan"), 3.0, float("inf"), float("-inf"), 6.0]
    client.log_batch(rid, params=[mlflow.entities.Param("long", long_value), mlflow.entities.Param("short", "1")],
                     metrics=_metrics("val_loss", values) + _metrics("train_acc", [0.1, 0.2]))
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("hello")
    client.log_artifacts(rid, str(tmp_path / "a"), "docs/sub")
    client.set_terminated(rid)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")  # the importer sets it itself for a file store URI

    summary = import_runs(mlruns.as_uri(), store=store, tracker=tracker)
    (rep,) = summary.runs
    assert rep.outcome == "partial" and summary.partial == 1 and summary.failed == 0
    assert rep.skipped_points == 3 and rep.metric_points == 5 and summary.skipped_points == 3
    assert any("'val_loss': 3 of 6 points are NaN/inf" in r for r in rep.reasons)
    assert any("parameter 'long' is 5,000 characters" in r for r in rep.reasons)

    session = _session(tracker, store, rid)
    assert _assert_same_history(client, session, rid) == 5
    assert session.series("loss", "val") == {0: 1.0, 2: 3.0, 5: 6.0}
    hp = session.hyperparams["General"]
    assert hp["short"] == "1" and len(hp["long"]) == mi.MAX_VALUE_CHARS and hp["long"].endswith(mi.TRUNCATION_MARKER)
    full = json.loads(_artifact_bytes(session, mi.LONG_VALUES_ARTIFACT))
    assert full["params"]["long"] == long_value
    assert session.artifacts["docs/sub/notes.txt"]["content_size"] == 5
    assert "mlflow-import-partial" in session.task["tags"]
    assert "NaN/inf" in _props(session)["mlflow_import_issues"]
    assert _mapping(store)[rid].status == "partial"
    # partial runs are not imported again unless asked
    assert import_runs(str(mlruns), store=store, tracker=tracker).skipped == 1
    redo = import_runs(str(mlruns), store=store, tracker=tracker, retry_partial=True)
    assert redo.partial == 1 and _mapping(store)[rid].details["previous_task_ids"] == [session.task_id]


def test_bad_inputs_are_reported_and_the_rest_continues(mlflow_sqlite: str, tmp_path: Path,
                                                        tracker: ClearMLTracker, store: JobStore) -> None:
    data = _populate(mlflow_sqlite, tmp_path)
    client, (rid1, rid2, rid3) = data["client"], data["runs"]
    run1 = client.get_run(rid1)
    # an artifact that is missing on disk (a dangling link, e.g. a moved NFS share) ...
    best = Path(run1.info.artifact_uri.removeprefix("file://")) / "weights" / "best.pt"
    best.unlink()
    best.symlink_to(tmp_path / "gone" / "best.pt")
    # ... and a registered model whose files were deleted
    shutil.rmtree(Path(client.get_run(rid3).info.artifact_uri.removeprefix("file://")) / "model")
    # a run that never finished
    det = client.get_experiment_by_name("detection").experiment_id
    zombie = client.create_run(det, run_name="still-running").info.run_id

    summary = import_runs(mlflow_sqlite, store=store, tracker=tracker, experiments=["detection", "expérience ü", "nope"],
                          run_ids=["0123456789abcdef0123456789abcdef"])
    by_id = {r.run_id: r for r in summary.runs}
    assert any("experiment 'nope' does not exist" in p and "'detection'" in p for p in summary.problems)
    missing = by_id["0123456789abcdef0123456789abcdef"]
    assert missing.outcome == "failed" and "not found" in missing.reasons[0]
    assert by_id[rid1].outcome == "partial"
    assert any("artifact 'weights/best.pt' is missing on disk" in r for r in by_id[rid1].reasons)
    assert by_id[rid3].outcome == "partial"
    assert any("registered model 'detector' version 2: its files are missing on disk" in r for r in by_id[rid3].reasons)
    assert by_id[rid2].outcome == "imported" and by_id[zombie].outcome == "imported"
    assert not summary.ok and summary.failed == 1 and summary.partial == 2
    text = "\n".join(summary.lines())
    assert "FAILED: run 0123456789abcdef0123456789abcdef" in text and "problem: experiment 'nope'" in text

    s1 = _session(tracker, store, rid1)
    assert "weights/best.pt" not in s1.artifacts and "plots/curves/loss.png" in s1.artifacts
    assert len(s1.models) == 1  # version 1 still registered
    assert _assert_same_history(client, s1, rid1) == 190
    s_zombie = _session(tracker, store, zombie)
    assert s_zombie.final_status == "failed" and "RUNNING" in s_zombie.status["status_reason"]


def test_remote_artifact_stores_go_through_mlflow_downloads(mlflow_sqlite: str, tmp_path: Path,
                                                            tracker: ClearMLTracker, store: JobStore,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Artifact roots that are not local paths (s3, mlflow-artifacts, ...) are listed and downloaded by MLflow."""
    data = _populate(mlflow_sqlite, tmp_path)
    rid1 = data["runs"][0]
    monkeypatch.setattr(mi, "_local_path", lambda uri: None)  # treat every artifact/model URI as remote
    summary = import_runs(mlflow_sqlite, store=store, tracker=tracker, run_ids=[rid1])
    assert summary.imported == 1, summary.lines()
    s1 = _session(tracker, store, rid1)
    src = data["src"]
    for name in ("plots/curves/loss.png", "weights/best.pt", "model/model.pt"):
        assert _artifact_bytes(s1, name) == (src / name).read_bytes()
    (model,) = s1.models
    with zipfile.ZipFile(io.BytesIO(_zip_bytes(s1, "models/detector-v1.zip"))) as zf:
        assert sorted(zf.namelist()) == ["MLmodel", "model.pt"]


def test_mlflow3_logged_model_travels_as_artifacts(mlflow_sqlite: str, tmp_path: Path, tracker: ClearMLTracker,
                                                   store: JobStore) -> None:
    from mlflow.entities import LoggedModelOutput

    client = MlflowClient(tracking_uri=mlflow_sqlite)
    exp = client.create_experiment("mlflow3", artifact_location=(tmp_path / "arts").as_uri())
    rid = client.create_run(exp, run_name="logs-a-model").info.run_id
    model = client.create_logged_model(exp, name="clf", source_run_id=rid)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "MLmodel").write_text("flavors: {sklearn: {}}\n")
    (tmp_path / "m" / "model.pkl").write_bytes(b"p" * 10)
    client.log_model_artifacts(model.model_id, str(tmp_path / "m"))
    client.log_outputs(rid, [LoggedModelOutput(model.model_id, 0)])
    client.set_terminated(rid)

    summary = import_runs(mlflow_sqlite, store=store, tracker=tracker)
    assert summary.imported == 1, summary.lines()
    session = _session(tracker, store, rid)
    assert set(session.artifacts) == {"logged_models/clf/MLmodel", "logged_models/clf/model.pkl"}
    assert _artifact_bytes(session, "logged_models/clf/model.pkl") == b"p" * 10


def test_unreachable_or_missing_tracking_uri_is_a_clear_error(tmp_path: Path, tracker: ClearMLTracker) -> None:
    t0 = time.monotonic()
    with pytest.raises(MLflowImportError, match="unreachable"):
        import_runs("http://127.0.0.1:9", dry_run=True)
    assert time.monotonic() - t0 < 30
    with pytest.raises(MLflowImportError, match="no SQLite database at"):
        import_runs(f"sqlite:///{tmp_path / 'nope.db'}", dry_run=True)
    assert not (tmp_path / "nope.db").exists()
    with pytest.raises(MLflowImportError, match="no MLflow file store"):
        import_runs(str(tmp_path / "mlruns"), dry_run=True)


def test_interrupted_import_resumes(mlflow_sqlite: str, tmp_path: Path, tracker: ClearMLTracker,
                                   store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _populate(mlflow_sqlite, tmp_path)
    client, (rid1, rid2, rid3) = data["client"], data["runs"]
    job = store.create_job("training", mlflow_run_id=rid2)
    real = mi._Importer._log_metrics

    def ctrl_c_on_second_run(self, task, history, rep):
        if rep.run_id == rid2:
            raise KeyboardInterrupt
        return real(self, task, history, rep)

    monkeypatch.setattr(mi._Importer, "_log_metrics", ctrl_c_on_second_run)
    with pytest.raises(KeyboardInterrupt):
        import_runs(mlflow_sqlite, store=store, tracker=tracker)
    rows = _mapping(store)
    assert rows[rid1].status == "imported" and rows[rid2].status == "failed" and rid3 not in rows
    interrupted_task = rows[rid2].clearml_task_id
    assert session_for_task(tracker.offline_root(), interrupted_task).final_status == "failed"
    assert store.get_job("training", job)["clearml_task_id"] is None  # never linked to an incomplete task

    monkeypatch.setattr(mi._Importer, "_log_metrics", real)
    summary = import_runs(mlflow_sqlite, store=store, tracker=tracker)
    assert (summary.skipped, summary.imported, summary.failed) == (1, 2, 0)
    rows = _mapping(store)
    assert rows[rid2].clearml_task_id != interrupted_task
    assert rows[rid2].details["previous_task_ids"] == [interrupted_task]
    assert store.get_job("training", job)["clearml_task_id"] == rows[rid2].clearml_task_id
    _assert_same_history(client, _session(tracker, store, rid2), rid2)


def test_killed_import_left_started_is_abandoned_and_redone(mlflow_sqlite: str, tmp_path: Path,
                                                            tracker: ClearMLTracker, store: JobStore) -> None:
    data = _populate(mlflow_sqlite, tmp_path)
    rid1 = data["runs"][0]
    # what a SIGKILL mid-run leaves: the row says started, the session folder was never closed (zipped)
    dead = "offline-0000deadbeef"
    folder = tracker.offline_root() / dead
    folder.mkdir(parents=True)
    (folder / "task.json").write_text(json.dumps({"id": dead, "name": "yolo-baseline"}))
    with store.session() as s:
        s.add(MLflowImport(mlflow_run_id=rid1, clearml_task_id=dead, status="started", details={}))

    summary = import_runs(mlflow_sqlite, store=store, tracker=tracker, experiments=["detection"])
    assert summary.imported == 2 and summary.failed == 0
    row = _mapping(store)[rid1]
    assert row.status == "imported" and row.clearml_task_id != dead
    assert row.details["abandoned_task_ids"] == [dead]
    assert json.loads((folder / STATUS_FILE).read_text())["status"] == "failed"
    assert any("was interrupted" in n for n in summary.notes)
    assert all(p.stem != dead for p in find_sessions(tracker.offline_root()))


def test_dry_run_changes_nothing(mlflow_sqlite: str, tmp_path: Path, tracker: ClearMLTracker) -> None:
    data = _populate(mlflow_sqlite, tmp_path)
    db = tmp_path / "jobs-dry.sqlite"
    lines: list[str] = []
    summary = import_runs(mlflow_sqlite, store=JobStore(f"sqlite:///{db}"), tracker=tracker, dry_run=True,
                          echo=lines.append)
    assert not db.exists() and not tracker.offline_root().exists()
    assert summary.would_import == 3 and summary.imported == 0 and summary.metric_points == 223
    assert summary.bytes_moved > 0
    assert sum(line.startswith("would import run") for line in lines) == 3
    assert "dry run, nothing changed" in summary.lines()[0]

    store = JobStore(f"sqlite:///{db}")
    store.ensure_schema()
    job = store.create_job("training", mlflow_run_id=data["runs"][0])
    import_runs(mlflow_sqlite, store=store, tracker=tracker, experiments=["detection"])
    zips = find_sessions(tracker.offline_root())
    with store.session() as s:
        before = [(r.mlflow_run_id, r.status, r.clearml_task_id) for r in s.scalars(select(MLflowImport))]
    lines.clear()
    again = import_runs(mlflow_sqlite, store=store, tracker=tracker, dry_run=True, echo=lines.append)
    assert (again.skipped, again.would_import) == (2, 1)
    assert any(line.startswith("would skip run") for line in lines)
    assert find_sessions(tracker.offline_root()) == zips
    with store.session() as s:
        assert [(r.mlflow_run_id, r.status, r.clearml_task_id) for r in s.scalars(select(MLflowImport))] == before
    assert store.get_job("training", job)["clearml_task_id"] == before[0][2]
    store.dispose()


def test_bulk_metric_read_matches_the_public_api(mlflow_sqlite: str, tmp_path: Path) -> None:
    data = _populate(mlflow_sqlite, tmp_path)
    client = data["client"]
    rid = data["runs"][0]
    client.log_batch(rid, metrics=[Metric("odd", float("nan"), T0, 0), Metric("odd", 1.0, T0 + 1, 0),
                                   Metric("odd", float("inf"), T0 + 2, 1)])
    source = mi._MLflowSource(mlflow_sqlite)
    runs = [client.get_run(r) for r in data["runs"]]
    bulk = source._sql_histories([r.info.run_id for r in runs])
    assert bulk is not None

    def norm(points):
        return [(s, "nan" if math.isnan(v) else v) for s, v in points]

    for run in runs:
        public = {k: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)]
                  for k in run.data.metrics}
        assert {k: norm(v) for k, v in bulk[run.info.run_id].items()} == {k: norm(v) for k, v in public.items()}


def test_cli_command(mlflow_sqlite: str, tmp_path: Path, isolated_home: Path, capsys: pytest.CaptureFixture) -> None:
    from vision_pipeline import cli, settings
    from vision_pipeline.tracking.session_reader import read_session

    _populate(mlflow_sqlite, tmp_path)
    rc = cli.main(["mlflow-import", "--tracking-uri", mlflow_sqlite, "--experiment", "detection",
                   "--project-map", "detection=Vision/Detection", "--dry-run"])
    out = capsys.readouterr().out
    assert rc == 0 and "would import run" in out and "dry run, nothing changed" in out
    assert not (settings.clearml_dir() / "offline").exists()

    rc = cli.main(["mlflow-import", "--tracking-uri", mlflow_sqlite, "--experiment", "detection",
                   "--project-map", "detection=Vision/Detection"])
    captured = capsys.readouterr()
    assert rc == 0 and "2 imported" in captured.out and "mlflow-import" in captured.err  # the progress bar
    sessions = [read_session(p) for p in find_sessions(settings.clearml_dir() / "offline")]
    assert {s.project for s in sessions} == {"Vision/Detection"} and len(sessions) == 2

    rc = cli.main(["mlflow-import", "--tracking-uri", mlflow_sqlite, "--experiment", "nope"])
    assert rc == 1 and "experiment 'nope' does not exist" in capsys.readouterr().out
    rc = cli.main(["mlflow-import", "--tracking-uri", f"sqlite:///{tmp_path / 'missing.db'}"])
    assert rc == 2 and "error: MLflow tracking URI" in capsys.readouterr().err
    rc = cli.main(["mlflow-import", "--tracking-uri", mlflow_sqlite, "--project-map", "no-equals-sign"])
    assert rc == 2 and "EXPERIMENT=PROJECT" in capsys.readouterr().err


def test_benchmark_helper_reports_figures(tmp_path: Path, mlflow_template: Path) -> None:
    result = benchmark_import(3, 2, 20, tmp_path / "bench", mlflow_db_template=mlflow_template)
    assert result["points"] == 120 and result["imported"] == 3 and result["imported_points"] == 120
    assert result["mlflow_read_twice_s"] > 0 and result["import_s"] > 0 and isinstance(result["passed"], bool)
    assert "error" not in result
    again = benchmark_import(3, 2, 20, tmp_path / "bench")  # the MLflow data is reused
    assert again["created_s"] is None and again["points"] == 120
