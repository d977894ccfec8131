"""`clearml sync`: offline sessions -> server, job rows remapped, every session imported-and-remapped or untouched.

The sessions are written by the real tracker in offline mode and the job rows live in the real
database (SQLite and PostgreSQL through ``db_url``). What cannot exist on the test machines is a
ClearML server (it needs MongoDB, Elasticsearch and Redis), so two stand-ins are used, and only for
the server side:

* ``FakeServer`` replaces ``Task.import_offline_session`` / ``mark_failed`` / tagging: it hands out
  server-style task ids and records every call, so the tests can prove what was (not) imported;
* ``clearml_stub`` is a loopback HTTP server answering the two endpoints the pre-flight check calls
  (``debug.ping``, ``auth.login`` with basic auth), like the ClearML apiserver does.

``test_live_server_sync`` runs the same flow against a real server with the real SDK when
``CLEARML_API_HOST`` (and the keys) are exported.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError

from vision_pipeline.records.models import ClearMLSyncedSession, ModelPromotion
from vision_pipeline.records.store import JobStore
from vision_pipeline.tracking import ClearMLConfig, ClearMLTracker
from vision_pipeline.tracking.sync import (
    JOURNAL_NAME,
    ServerUnavailable,
    SyncError,
    _locked,
    sync_offline_sessions,
)

# Captured at import, before the autouse ``isolated_home`` fixture clears the CLEARML_* variables.
_LIVE = {k: os.environ.get(k) for k in ("CLEARML_API_HOST", "CLEARML_WEB_HOST", "CLEARML_FILES_HOST",
                                        "CLEARML_API_ACCESS_KEY", "CLEARML_API_SECRET_KEY")}

ACCESS_KEY = "TESTACCESSKEY0001"
SECRET_KEY = "test-secret-Xq9-never-printed"


# ------------------------------------------------------------------------------------- stand-ins


@dataclass
class Stub:
    url: str
    calls: list[str] = field(default_factory=list)


@pytest.fixture
def clearml_stub() -> Iterator[Stub]:
    """Loopback HTTP server answering ``debug.ping`` and ``auth.login`` the way the ClearML apiserver does
    (JSON ``meta``/``data``; 401 for a wrong key pair); ``/`` answers 200 like the web UI and file server."""
    calls: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def _send(self, status: int, payload: dict | None, ctype: str = "application/json", raw: bytes = b"") -> None:
            body = json.dumps(payload).encode() if payload is not None else raw
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            path = self.path.split("?")[0]
            calls.append(path)
            meta = {"id": uuid.uuid4().hex, "trx": uuid.uuid4().hex, "endpoint": {"name": path.strip("/")},
                    "result_code": 200, "result_subcode": 0, "result_msg": "OK"}
            if path == "/debug.ping":
                self._send(200, {"meta": meta, "data": {"msg": "ClearML server"}})
            elif path == "/auth.login":
                expected = "Basic " + base64.b64encode(f"{ACCESS_KEY}:{SECRET_KEY}".encode()).decode()
                if self.headers.get("Authorization") == expected:
                    self._send(200, {"meta": meta, "data": {"token": "tok-" + uuid.uuid4().hex}})
                else:
                    meta.update(result_code=401, result_subcode=20, result_msg="Unauthorized (invalid credentials)")
                    self._send(401, {"meta": meta, "data": {}})
            elif path == "/":
                self._send(200, None, "text/html", b"<html>ClearML</html>")
            else:
                meta.update(result_code=400, result_msg="Invalid request path")
                self._send(400, {"meta": meta, "data": {}})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Stub(f"http://127.0.0.1:{server.server_address[1]}", calls)
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class FakeServer:
    """Stands in for the ClearML server (none can run here): records calls, returns server-style ids."""

    fail_on_import: int | None = None  # 1-based number of the import call that raises
    imports: list[str] = field(default_factory=list)  # offline task ids (zip stems), in call order
    server_ids: dict[str, str] = field(default_factory=dict)  # offline id -> server id handed out
    failed_marks: list[tuple[str, str]] = field(default_factory=list)
    tags: list[tuple[str, list[str]]] = field(default_factory=list)
    model_ids: dict[str, str] = field(default_factory=dict)

    def import_session(self, path: Path) -> str:
        self.imports.append(Path(path).stem)
        if self.fail_on_import == len(self.imports):
            raise ConnectionError("simulated: the apiserver closed the connection during events.add_batch")
        new_id = uuid.uuid4().hex
        self.server_ids[Path(path).stem] = new_id
        return new_id

    def mark_failed(self, task_id: str, reason: str) -> None:
        self.failed_marks.append((task_id, reason))

    def tag_production(self, task_id: str, model_names) -> dict[str, str]:
        self.tags.append((task_id, list(model_names)))
        return {name: self.model_ids.setdefault(name, uuid.uuid4().hex) for name in model_names}


# ------------------------------------------------------------------------------------- sessions, rows


@dataclass
class Sessions:
    folder: Path
    training: str  # completed, one registered model ("best")
    export: str  # failed: "ValueError: bad label"
    inference: str  # completed
    model_id: str

    @property
    def ids(self) -> list[str]:
        return [self.training, self.export, self.inference]


@pytest.fixture(scope="module")
def recorded_sessions(tmp_path_factory: pytest.TempPathFactory) -> Sessions:
    """Three sessions written once per module by the real tracker, offline."""
    base = tmp_path_factory.mktemp("recorded")
    saved = os.environ.get("CLEARML_CACHE_DIR")
    tracker = ClearMLTracker(ClearMLConfig(cache_dir=base / "clearml", project_id=3))
    try:
        weights = base / "best.pt"
        weights.write_bytes(os.urandom(4096))
        with tracker.task("Training Job 1 - yolo11n", "training") as task:
            task.log_metrics({"train_loss": 0.9, "val_mAP50": 0.4}, 0)
            model_id = task.register_model(weights, name="best", tags=["best"])
            training = task.id
        with pytest.raises(ValueError):
            with tracker.task("Export Job 2 - onnx", "custom") as task:
                export = task.id
                raise ValueError("bad label")
        with tracker.task("Inference Job 3 - yolo11n", "inference") as task:
            task.log_text("42 detections")
            inference = task.id
    finally:
        if saved is None:
            os.environ.pop("CLEARML_CACHE_DIR", None)
        else:
            os.environ["CLEARML_CACHE_DIR"] = saved
    return Sessions(tracker.offline_root(), training, export, inference, model_id)


@pytest.fixture
def offline_root(recorded_sessions: Sessions, tmp_path: Path) -> Path:
    """A private copy of the recorded sessions (mtimes kept, so the order is training, export, inference)."""
    root = tmp_path / "clearml" / "offline"
    shutil.copytree(recorded_sessions.folder, root)
    return root


@pytest.fixture
def store(db_url: str) -> Iterator[JobStore]:
    s = JobStore(db_url)
    s.ensure_schema()
    yield s
    s.dispose()


@dataclass
class Rows:
    training: int
    export: int
    inference: int
    unrelated: int


@pytest.fixture
def rows(store: JobStore, recorded_sessions: Sessions) -> Rows:
    """Job rows naming the offline ids, as the pipeline writes them, plus the current production promotion."""
    ids = {}
    for kind, oid in (("training", recorded_sessions.training), ("export", recorded_sessions.export),
                      ("inference", recorded_sessions.inference)):
        ids[kind] = store.create_job(kind, config={"n": 1})
        store.start_job(kind, ids[kind], clearml_task_id=oid)
    unrelated = store.create_job("dataset")
    store.start_job("dataset", unrelated, clearml_task_id="0123456789abcdef0123456789abcdef")
    with store.session() as s:
        s.add(ModelPromotion(training_job_id=ids["training"], decision="promoted", is_current=True,
                             clearml_task_id=recorded_sessions.training, clearml_model_id=recorded_sessions.model_id,
                             map50=0.4))
    return Rows(ids["training"], ids["export"], ids["inference"], unrelated)


def _config(stub: Stub, tmp_path: Path, secret: str = SECRET_KEY) -> ClearMLConfig:
    return ClearMLConfig(api_host=stub.url, access_key=ACCESS_KEY, secret_key=secret, cache_dir=tmp_path / "clearml")


def _task_ids(store: JobStore, rows: Rows) -> dict[str, str]:
    return {kind: store.get_job(kind, getattr(rows, kind))["clearml_task_id"]
            for kind in ("training", "export", "inference")}


def _synced(store: JobStore) -> dict[str, ClearMLSyncedSession]:
    with store.session() as s:
        return {r.offline_task_id: r for r in s.scalars(select(ClearMLSyncedSession))}


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.zip"))}


# ------------------------------------------------------------------------------------------- tests


def test_sync_imports_remaps_records_and_is_idempotent(
    store: JobStore, rows: Rows, recorded_sessions: Sessions, offline_root: Path, clearml_stub: Stub, tmp_path: Path
) -> None:
    """Real sessions and DB, FakeServer for the server (no ClearML server can run on the test machines)."""
    before = _digests(offline_root)
    server = FakeServer()
    report = sync_offline_sessions(_config(clearml_stub, tmp_path), store, offline_root=offline_root, importer=server)

    assert report.ok and not report.pending, report.lines()
    assert server.imports == recorded_sessions.ids  # oldest first, each once
    assert [o.action for o in report.imported] == ["imported"] * 3
    assert report.rows_remapped == 4  # three job rows + the promotion row
    assert clearml_stub.calls[:2] == ["/debug.ping", "/auth.login"]

    ids = _task_ids(store, rows)
    assert ids == {"training": server.server_ids[recorded_sessions.training],
                   "export": server.server_ids[recorded_sessions.export],
                   "inference": server.server_ids[recorded_sessions.inference]}
    assert store.get_job("dataset", rows.unrelated)["clearml_task_id"] == "0123456789abcdef0123456789abcdef"

    synced = _synced(store)
    assert set(synced) == set(recorded_sessions.ids)
    assert synced[recorded_sessions.training].server_task_id == ids["training"]
    assert synced[recorded_sessions.training].api_host == clearml_stub.url
    assert synced[recorded_sessions.training].rows_remapped == 2  # job row + promotion row
    assert synced[recorded_sessions.export].session_path == str(offline_root / f"{recorded_sessions.export}.zip")

    # The import marks everything completed; the failed task gets its recorded status back.
    assert server.failed_marks == [(ids["export"], "ValueError: bad label")]
    # The current production model follows to the server: task and model tagged, ids remapped.
    assert server.tags == [(ids["training"], ["best"])]
    with store.session() as s:
        promo = s.scalars(select(ModelPromotion)).one()
        assert promo.clearml_task_id == ids["training"]
        assert promo.clearml_model_id == server.model_ids["best"]

    journal = [json.loads(line) for line in (offline_root / JOURNAL_NAME).read_text().splitlines()]
    assert [e["event"] for e in journal if e["offline_task_id"] == recorded_sessions.export] == [
        "importing", "imported", "committed"]
    assert _digests(offline_root) == before  # the sessions themselves are kept as they were

    again = sync_offline_sessions(_config(clearml_stub, tmp_path), store, offline_root=offline_root, importer=server)
    assert again.ok and not again.imported and len(again.skipped) == 3
    assert server.imports == recorded_sessions.ids  # nothing imported twice
    assert _task_ids(store, rows) == ids


def test_failing_import_midway_leaves_the_rest_untouched_and_rerun_finishes(
    store: JobStore, rows: Rows, recorded_sessions: Sessions, offline_root: Path, clearml_stub: Stub, tmp_path: Path
) -> None:
    """FakeServer fails the 2nd of 3 imports (a real server cannot run here)."""
    server = FakeServer(fail_on_import=2)
    report = sync_offline_sessions(_config(clearml_stub, tmp_path), store, offline_root=offline_root, importer=server)

    assert not report.ok
    assert [o.offline_task_id for o in report.imported] == [recorded_sessions.training]
    (failed,) = report.failed
    assert failed.offline_task_id == recorded_sessions.export
    assert "import failed (ConnectionError" in failed.message and "untouched" in failed.message
    assert [o.offline_task_id for o in report.pending] == [recorded_sessions.inference]
    assert server.imports == recorded_sessions.ids[:2]  # the run stopped at the failure

    ids = _task_ids(store, rows)
    assert ids["training"] == server.server_ids[recorded_sessions.training]  # imported and remapped
    assert ids["export"] == recorded_sessions.export  # untouched
    assert ids["inference"] == recorded_sessions.inference  # untouched
    assert set(_synced(store)) == {recorded_sessions.training}
    assert server.failed_marks == []

    rerun = FakeServer()
    report = sync_offline_sessions(_config(clearml_stub, tmp_path), store, offline_root=offline_root, importer=rerun)
    assert report.ok, report.lines()
    assert rerun.imports == [recorded_sessions.export, recorded_sessions.inference]
    assert [o.offline_task_id for o in report.skipped] == [recorded_sessions.training]
    ids = _task_ids(store, rows)
    assert ids["export"] == rerun.server_ids[recorded_sessions.export]
    assert ids["inference"] == rerun.server_ids[recorded_sessions.inference]
    assert set(_synced(store)) == set(recorded_sessions.ids)
    assert rerun.failed_marks == [(ids["export"], "ValueError: bad label")]


def test_database_failure_after_import_is_finished_from_the_journal_without_reimport(
    store: JobStore, rows: Rows, recorded_sessions: Sessions, offline_root: Path, clearml_stub: Stub, tmp_path: Path
) -> None:
    """The database fails inside the remap transaction after the (fake) server import succeeded."""

    def outage(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO CLEARML_SYNCED_SESSIONS"):
            raise OperationalError(statement, parameters, Exception("simulated: server closed the connection"))

    server = FakeServer()
    event.listen(store.engine, "before_cursor_execute", outage)
    try:
        report = sync_offline_sessions(_config(clearml_stub, tmp_path), store, offline_root=offline_root,
                                       importer=server)
    finally:
        event.remove(store.engine, "before_cursor_execute", outage)

    (failed,) = report.failed
    first_id = server.server_ids[recorded_sessions.training]
    assert failed.offline_task_id == recorded_sessions.training and failed.server_task_id == first_id
    assert "database is unchanged" in failed.message and "without importing again" in failed.message
    assert len(report.pending) == 2 and not report.imported
    # The remap UPDATE ran inside the transaction and was rolled back with it.
    assert _task_ids(store, rows)["training"] == recorded_sessions.training
    with store.session() as s:
        assert s.scalars(select(ModelPromotion)).one().clearml_task_id == recorded_sessions.training
    assert _synced(store) == {}
    journal = (offline_root / JOURNAL_NAME).read_text()
    assert first_id in journal

    report = sync_offline_sessions(_config(clearml_stub, tmp_path), store, offline_root=offline_root, importer=server)
    assert report.ok, report.lines()
    assert server.imports == recorded_sessions.ids  # the training session was imported once, not twice
    resumed = report.imported[0]
    assert resumed.action == "resumed" and resumed.server_task_id == first_id
    ids = _task_ids(store, rows)
    assert ids["training"] == first_id
    assert _synced(store)[recorded_sessions.training].server_task_id == first_id
    assert set(_synced(store)) == set(recorded_sessions.ids)


def test_journal_finishes_a_session_whose_file_is_gone(
    store: JobStore, rows: Rows, recorded_sessions: Sessions, offline_root: Path, clearml_stub: Stub, tmp_path: Path
) -> None:
    """Imported (FakeServer), database step failed, then the zip was deleted: the journal alone finishes the remap."""

    def outage(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO CLEARML_SYNCED_SESSIONS"):
            raise OperationalError(statement, parameters, Exception("simulated: disk full"))

    server = FakeServer()
    event.listen(store.engine, "before_cursor_execute", outage)
    try:
        sync_offline_sessions(_config(clearml_stub, tmp_path), store, offline_root=offline_root, importer=server)
    finally:
        event.remove(store.engine, "before_cursor_execute", outage)
    (offline_root / f"{recorded_sessions.training}.zip").unlink()

    report = sync_offline_sessions(_config(clearml_stub, tmp_path), store, offline_root=offline_root, importer=server)
    assert report.ok, report.lines()
    assert server.imports == recorded_sessions.ids  # training imported once, by the first run
    assert _task_ids(store, rows)["training"] == server.server_ids[recorded_sessions.training]
    assert any("session file is gone" in w for w in report.warnings)


def test_corrupt_zip_is_reported_skipped_and_kept(
    store: JobStore, rows: Rows, recorded_sessions: Sessions, offline_root: Path, clearml_stub: Stub, tmp_path: Path
) -> None:
    """FakeServer for the server (none can run here); the corrupt files are real bytes on disk."""
    garbage = offline_root / "offline-0000garbage.zip"
    garbage.write_bytes(b"this is not a zip file at all")
    good = (offline_root / f"{recorded_sessions.inference}.zip").read_bytes()
    truncated = offline_root / "offline-0000truncated.zip"
    truncated.write_bytes(good[: len(good) // 2])
    before = _digests(offline_root)

    server = FakeServer()
    report = sync_offline_sessions(_config(clearml_stub, tmp_path), store, offline_root=offline_root, importer=server)

    assert sorted(o.offline_task_id for o in report.failed) == ["offline-0000garbage", "offline-0000truncated"]
    assert all("corrupt offline session" in o.message and "left as it is" in o.message for o in report.failed)
    assert sorted(server.imports) == sorted(recorded_sessions.ids)  # the others continued
    assert len(report.imported) == 3 and not report.pending
    assert _digests(offline_root) == before  # nothing stored is lost or changed
    assert "offline-0000garbage" not in _synced(store)


def test_offline_config_is_refused_and_nothing_changes(
    store: JobStore, rows: Rows, recorded_sessions: Sessions, offline_root: Path, tmp_path: Path
) -> None:
    server = FakeServer()
    with pytest.raises(SyncError, match="no ClearML server configured: set CLEARML_API_HOST/keys"):
        sync_offline_sessions(ClearMLConfig(cache_dir=tmp_path / "clearml"), store, offline_root=offline_root,
                              importer=server)
    forced = ClearMLConfig(api_host="http://clearml:8008", access_key="a", secret_key="b", offline_mode=True)
    with pytest.raises(SyncError, match="unset CLEARML_OFFLINE_MODE"):
        sync_offline_sessions(forced, store, offline_root=offline_root, importer=server)
    assert server.imports == [] and _synced(store) == {}
    assert _task_ids(store, rows)["training"] == recorded_sessions.training
    assert not (offline_root / JOURNAL_NAME).exists()


def test_unreachable_server_says_so_and_changes_nothing(
    store: JobStore, rows: Rows, recorded_sessions: Sessions, offline_root: Path, tmp_path: Path
) -> None:
    server = FakeServer()
    config = ClearMLConfig(api_host="http://127.0.0.1:9", access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    with pytest.raises(ServerUnavailable) as err:
        sync_offline_sessions(config, store, offline_root=offline_root, importer=server)
    message = str(err.value)
    assert "http://127.0.0.1:9 is unreachable (connection refused)" in message
    assert "nothing was synced" in message and SECRET_KEY not in message
    assert server.imports == [] and _synced(store) == {}
    assert _task_ids(store, rows)["export"] == recorded_sessions.export
    assert not (offline_root / JOURNAL_NAME).exists()


def test_wrong_keys_are_named_and_nothing_changes(
    store: JobStore, rows: Rows, recorded_sessions: Sessions, offline_root: Path, clearml_stub: Stub, tmp_path: Path
) -> None:
    server = FakeServer()
    with pytest.raises(ServerUnavailable) as err:
        sync_offline_sessions(_config(clearml_stub, tmp_path, secret="wrong-secret-value"), store,
                              offline_root=offline_root, importer=server)
    message = str(err.value)
    assert "rejected the credentials (HTTP 401" in message
    assert "CLEARML_API_ACCESS_KEY / CLEARML_API_SECRET_KEY" in message
    assert "wrong-secret-value" not in message
    assert server.imports == [] and _synced(store) == {}


def test_dry_run_lists_and_changes_nothing(
    store: JobStore, rows: Rows, recorded_sessions: Sessions, offline_root: Path, clearml_stub: Stub, tmp_path: Path
) -> None:
    server = FakeServer()
    report = sync_offline_sessions(_config(clearml_stub, tmp_path), store, offline_root=offline_root,
                                   importer=server, dry_run=True)
    assert [o.action for o in report.pending] == ["would-import"] * 3
    assert "nothing was imported or changed" in report.lines()[-1]
    assert server.imports == [] and _synced(store) == {}
    assert not (offline_root / JOURNAL_NAME).exists()


def test_concurrent_sync_is_refused(
    store: JobStore, rows: Rows, offline_root: Path, clearml_stub: Stub, tmp_path: Path
) -> None:
    server = FakeServer()
    with _locked(offline_root):
        with pytest.raises(SyncError, match="another `vision-pipeline clearml sync` is running"):
            sync_offline_sessions(_config(clearml_stub, tmp_path), store, offline_root=offline_root, importer=server)
    assert server.imports == []


def test_journal_for_another_server_is_not_reused(
    store: JobStore, rows: Rows, recorded_sessions: Sessions, offline_root: Path, clearml_stub: Stub, tmp_path: Path
) -> None:
    """A journaled import into server A is not finished against server B (the id would not exist there)."""
    (offline_root / JOURNAL_NAME).write_text(json.dumps({
        "event": "imported", "offline_task_id": recorded_sessions.training, "server_task_id": "a" * 32,
        "api_host": "http://other-clearml:8008"}) + "\n" + '{"event": "imported", "offline_ta')  # + a torn line
    server = FakeServer()
    report = sync_offline_sessions(_config(clearml_stub, tmp_path), store, offline_root=offline_root, importer=server)
    (failed,) = report.failed
    assert failed.offline_task_id == recorded_sessions.training and "http://other-clearml:8008" in failed.message
    assert any("torn write" in w for w in report.warnings)
    assert server.imports == [recorded_sessions.export, recorded_sessions.inference]  # the others continue
    assert _task_ids(store, rows)["training"] == recorded_sessions.training


def test_cli_refuses_offline_and_lists_sessions(
    recorded_sessions: Sessions, clearml_stub: Stub, isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vision_pipeline import settings
    from vision_pipeline.cli import main

    root = settings.clearml_dir() / "offline"
    shutil.copytree(recorded_sessions.folder, root)
    assert main(["clearml", "sync"]) == 2
    assert "no ClearML server configured: set CLEARML_API_HOST/keys" in capsys.readouterr().err
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLEARML_API_HOST", "http://127.0.0.1:9")
        mp.setenv("CLEARML_API_ACCESS_KEY", ACCESS_KEY)
        mp.setenv("CLEARML_API_SECRET_KEY", SECRET_KEY)
        assert main(["clearml", "sync"]) == 2
    err = capsys.readouterr().err
    assert "unreachable (connection refused)" in err and "nothing was synced" in err and SECRET_KEY not in err

    store = JobStore(settings.database_url())
    store.ensure_schema()
    server = FakeServer(fail_on_import=3)
    sync_offline_sessions(_config(clearml_stub, isolated_home), store, offline_root=root, importer=server)
    store.dispose()
    (root / "offline-0000open").mkdir()  # a session whose process never closed it

    assert main(["clearml", "sessions"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith(("synced", "pending", "open"))}
    assert lines[recorded_sessions.training].startswith("synced")
    assert server.server_ids[recorded_sessions.training] in lines[recorded_sessions.training]
    assert "failed" in lines[recorded_sessions.export] and "Export Job 2 - onnx" in lines[recorded_sessions.export]
    assert lines[recorded_sessions.inference].startswith("pending")
    assert lines["offline-0000open"].startswith("open")
    assert "run `vision-pipeline clearml sync`" in out


@pytest.mark.skipif(not _LIVE["CLEARML_API_HOST"],
                    reason="needs a live ClearML server: export CLEARML_API_HOST, CLEARML_API_ACCESS_KEY, "
                           "CLEARML_API_SECRET_KEY (and VISION_PIPELINE_LIVE_CLEARML=1)")
def test_live_server_sync(tmp_path: Path) -> None:
    """The real thing: real SDK import into the configured server, real status, ids remapped in SQLite."""
    from clearml import Task

    offline = ClearMLTracker(ClearMLConfig(cache_dir=tmp_path / "clearml", project_id=99))
    tag = uuid.uuid4().hex[:8]
    with offline.task(f"vp sync live test {tag} ok", "training") as task:
        task.log_metrics({"train_loss": 0.5}, 0)
        ok_id = task.id
    with pytest.raises(RuntimeError):
        with offline.task(f"vp sync live test {tag} failed", "training") as task:
            failed_id = task.id
            raise RuntimeError("live failure")
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    store.ensure_schema()
    job_ok, job_failed = store.create_job("training"), store.create_job("training")
    store.start_job("training", job_ok, clearml_task_id=ok_id)
    store.start_job("training", job_failed, clearml_task_id=failed_id)

    config = ClearMLConfig(api_host=_LIVE["CLEARML_API_HOST"], web_host=_LIVE["CLEARML_WEB_HOST"],
                           files_host=_LIVE["CLEARML_FILES_HOST"], access_key=_LIVE["CLEARML_API_ACCESS_KEY"],
                           secret_key=_LIVE["CLEARML_API_SECRET_KEY"], cache_dir=tmp_path / "clearml-online")
    report = sync_offline_sessions(config, store, offline_root=offline.offline_root())
    assert report.ok and len(report.imported) == 2, report.lines()
    new_ok = store.get_job("training", job_ok)["clearml_task_id"]
    new_failed = store.get_job("training", job_failed)["clearml_task_id"]
    assert not new_ok.startswith("offline-") and not new_failed.startswith("offline-")
    assert Task.get_task(task_id=new_ok).get_status() == "completed"
    assert Task.get_task(task_id=new_failed).get_status() == "failed"

    again = sync_offline_sessions(config, store, offline_root=offline.offline_root())
    assert not again.imported and len(again.skipped) == 2
    store.dispose()
