"""`vision-pipeline clearml sync`: offline ClearML sessions -> a ClearML server, job rows following the ids.

Plain Python (no Dagster). Every session ends a run in one of two states, never in between:

* **untouched** - not imported, no job row changed, not recorded; or
* **imported and remapped** - the server holds the task (with its real final status), every job and
  promotion row that named the offline id names the server id, and ``clearml_synced_sessions`` has
  its row.

The server and the database cannot share a transaction, so the step between them is journaled:

1. ``importing`` is appended to ``<offline_root>/sync-journal.jsonl`` (fsync'd) before the import;
2. ``Task.import_offline_session`` creates the server task; its id is journaled (``imported``)
   *before* anything else happens;
3. the final status recorded offline is applied (the import marks every task completed), and
   current promotions are tagged ``production`` on the server (best effort);
4. ONE database transaction remaps the ids and inserts the ``clearml_synced_sessions`` row;
5. ``committed`` is journaled.

If step 3 or 4 fails, the database is unchanged (the transaction rolls back) and the journal knows the
server id: the next run finishes steps 3-5 for that session *without importing it again*. A session
with a ``clearml_synced_sessions`` row is never imported again. A lock file keeps two syncs from
running over the same sessions at once. The offline session files are never modified or deleted.

The reachability checks (``debug.ping``, ``auth.login``) are plain HTTP with short timeouts, shared
with ``vision-pipeline doctor``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select, update

from vision_pipeline.records.models import ClearMLSyncedSession, ModelPromotion
from vision_pipeline.records.store import JobStore

from .clearml_session import ClearMLConfig, ClearMLTracker, TrackingError
from .session_reader import OfflineSession, SessionError, find_sessions, read_session

log = logging.getLogger(__name__)

__all__ = [
    "HTTP_TIMEOUT",
    "JOURNAL_NAME",
    "SDKServer",
    "ServerUnavailable",
    "SessionOutcome",
    "SyncError",
    "SyncJournal",
    "SyncReport",
    "check_credentials",
    "check_server",
    "http_get",
    "ping_api",
    "require_online",
    "sync_offline_sessions",
]

JOURNAL_NAME = "sync-journal.jsonl"
LOCK_NAME = ".sync.lock"
HTTP_TIMEOUT = 3.0
PRODUCTION_TAG = "production"


class SyncError(TrackingError):
    """The sync refused to start; nothing was imported and nothing was changed."""


class ServerUnavailable(TrackingError):
    """The ClearML API server did not answer, is not a ClearML API server, or rejected the keys."""


# ------------------------------------------------------------------------------------ plain HTTP


def _reason(exc: BaseException, timeout: float) -> str:
    """A short human reason for a failed connection."""
    inner = getattr(exc, "reason", exc)
    if isinstance(inner, ConnectionRefusedError):
        return "connection refused"
    if isinstance(inner, (socket.timeout, TimeoutError)):
        return f"no answer within {timeout:g} s"
    if isinstance(inner, socket.gaierror):
        return "host name not found"
    if isinstance(inner, ssl.SSLError):
        return f"TLS error: {inner.reason or inner}"
    if isinstance(inner, ConnectionResetError):
        return "connection reset"
    if isinstance(inner, OSError) and inner.strerror:
        return inner.strerror.lower()
    return str(inner) or type(inner).__name__


def http_get(url: str, *, timeout: float = HTTP_TIMEOUT, basic_auth: tuple[str, str] | None = None) -> tuple[int, bytes, float]:
    """GET ``url``: (HTTP status, first 64 KiB of the body, milliseconds). An HTTP error status is returned,
    not raised; a connection problem raises :class:`ServerUnavailable` with the reason (never a secret)."""
    headers = {"Accept": "application/json"}
    if basic_auth:
        token = base64.b64encode(f"{basic_auth[0]}:{basic_auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    request = urllib.request.Request(url, headers=headers, method="GET")
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only, checked by callers
            body = response.read(65536)
            status = response.status
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(65536) if exc.fp else b""
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ServerUnavailable(_reason(exc, timeout)) from exc
    return status, body, (time.perf_counter() - t0) * 1000.0


def _json(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _result_msg(payload: dict[str, Any] | None) -> str:
    meta = (payload or {}).get("meta") or {}
    return str(meta.get("result_msg") or "").strip()


def _scrub(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def ping_api(api_host: str, *, timeout: float = HTTP_TIMEOUT) -> float:
    """``GET {api_host}/debug.ping``: the response time in ms, or :class:`ServerUnavailable` saying why."""
    host = api_host.rstrip("/")
    if not host.startswith(("http://", "https://")):
        raise ServerUnavailable(f"CLEARML_API_HOST must be an http(s) URL, got {host!r}")
    try:
        status, body, ms = http_get(f"{host}/debug.ping", timeout=timeout)
    except ServerUnavailable as exc:
        raise ServerUnavailable(
            f"ClearML API {host} is unreachable ({exc}): start the ClearML server or fix CLEARML_API_HOST, "
            "or set CLEARML_OFFLINE_MODE=1 to record offline and sync later"
        ) from exc
    payload = _json(body)
    if payload is None or "meta" not in payload:
        raise ServerUnavailable(
            f"{host} answered debug.ping with HTTP {status} but is not a ClearML API server: CLEARML_API_HOST "
            "must name the API server (port 8008 by default), not the web UI (8080) or the file server (8081)"
        )
    if status >= 500:
        raise ServerUnavailable(
            f"ClearML API {host} is up but failing (debug.ping: HTTP {status} {_result_msg(payload)}): "
            "check the apiserver logs and its MongoDB/Elasticsearch/Redis"
        )
    return ms


def check_credentials(api_host: str, access_key: str | None, secret_key: str | None, *,
                      timeout: float = HTTP_TIMEOUT) -> float:
    """``auth.login`` with the key pair (what the SDK does first): ms, or :class:`ServerUnavailable`."""
    host = api_host.rstrip("/")
    if not access_key or not secret_key:
        raise ServerUnavailable(
            f"CLEARML_API_HOST is set ({host}) but CLEARML_API_ACCESS_KEY / CLEARML_API_SECRET_KEY are not: "
            "create credentials in the ClearML web UI (Settings > Workspace) and export them"
        )
    try:
        status, body, ms = http_get(f"{host}/auth.login", timeout=timeout, basic_auth=(access_key, secret_key))
    except ServerUnavailable as exc:
        raise ServerUnavailable(f"ClearML API {host} is unreachable ({exc}) at auth.login") from exc
    payload = _json(body)
    detail = _scrub(_result_msg(payload), access_key, secret_key)
    if status in (401, 403):
        raise ServerUnavailable(
            f"ClearML API {host} rejected the credentials (HTTP {status}{': ' + detail if detail else ''}): check "
            "CLEARML_API_ACCESS_KEY / CLEARML_API_SECRET_KEY - create a key pair in the web UI "
            "(Settings > Workspace > Create new credentials)"
        )
    token = ((payload or {}).get("data") or {}).get("token")
    if status != 200 or not token:
        raise ServerUnavailable(
            f"ClearML API {host} did not log in (auth.login: HTTP {status}{', ' + detail if detail else ''}): "
            "check that CLEARML_API_HOST names the API server and that it is healthy"
        )
    return ms


@dataclass(frozen=True)
class ServerCheck:
    api_host: str
    ping_ms: float
    login_ms: float


def check_server(config: ClearMLConfig, *, timeout: float = HTTP_TIMEOUT) -> ServerCheck:
    """Reachable, a ClearML API server, and the keys accepted - or :class:`ServerUnavailable`."""
    host = (config.api_host or "").rstrip("/")
    ping_ms = ping_api(host, timeout=timeout)
    login_ms = check_credentials(host, config.access_key, config.secret_key, timeout=timeout)
    return ServerCheck(host, ping_ms, login_ms)


# ---------------------------------------------------------------------------------- server actions


class ServerActions(Protocol):
    """What the sync asks of the server. :class:`SDKServer` is the real one."""

    def import_session(self, path: Path) -> str: ...

    def mark_failed(self, task_id: str, reason: str) -> None: ...

    def tag_production(self, task_id: str, model_names: Sequence[str]) -> dict[str, str]: ...


class SDKServer:
    """The ClearML SDK against the configured server (credentials set from the config, no clearml.conf)."""

    def __init__(self, config: ClearMLConfig) -> None:
        self.config = config
        self._task_cls = None

    def _task(self):
        if self._task_cls is None:
            self._task_cls = ClearMLTracker(self.config)._prepare_sdk()
        return self._task_cls

    def import_session(self, path: Path) -> str:
        new_id = self._task().import_offline_session(str(path))
        if not new_id:
            raise TrackingError(f"Task.import_offline_session({path}) returned no task id")
        return str(new_id)

    def mark_failed(self, task_id: str, reason: str) -> None:
        task = self._task().get_task(task_id=task_id)
        task.mark_failed(ignore_errors=False, status_reason=reason[:250], status_message=reason, force=True)

    def tag_production(self, task_id: str, model_names: Sequence[str]) -> dict[str, str]:
        """Tag the task and its output models named ``model_names`` (all when empty) ``production`` and
        publish those models, as ``promotion.py`` does online; returns model name -> server model id for
        names that are unique on the task."""
        task = self._task().get_task(task_id=task_id)
        task.add_tags([PRODUCTION_TAG])
        seen: dict[str, list[str]] = {}
        for model in task.models["output"]:
            if model_names and model.name not in model_names:
                continue
            model.tags = sorted({*(model.tags or []), PRODUCTION_TAG})
            if not model.published:
                model.publish()
            seen.setdefault(model.name, []).append(model.id)
        return {name: ids[0] for name, ids in seen.items() if len(ids) == 1}


class _CallableServer:
    """``importer`` given as a plain callable (path -> server task id); the rest goes through the SDK."""

    def __init__(self, fn: Callable[[str], str], config: ClearMLConfig) -> None:
        self._fn = fn
        self._sdk = SDKServer(config)

    def import_session(self, path: Path) -> str:
        new_id = self._fn(str(path))
        if not new_id:
            raise TrackingError(f"the importer returned no task id for {path}")
        return str(new_id)

    def mark_failed(self, task_id: str, reason: str) -> None:
        self._sdk.mark_failed(task_id, reason)

    def tag_production(self, task_id: str, model_names: Sequence[str]) -> dict[str, str]:
        return self._sdk.tag_production(task_id, model_names)


def _server(importer: Any, config: ClearMLConfig) -> ServerActions:
    if importer is None:
        return SDKServer(config)
    if hasattr(importer, "import_session"):
        return importer
    if callable(importer):
        return _CallableServer(importer, config)
    raise TypeError(f"importer must be a callable or have import_session(), got {type(importer).__name__}")


# ------------------------------------------------------------------------------------------ journal


@dataclass(frozen=True)
class JournalEntry:
    offline_task_id: str
    server_task_id: str
    api_host: str | None
    event: str


class SyncJournal:
    """Append-only JSON lines: ``importing`` / ``imported`` / ``import-failed`` / ``committed``.

    Each line is flushed and fsync'd before the step it guards. A torn last line (a crash while
    writing) is ignored with a warning.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def append(self, event: str, offline_task_id: str, **fields: Any) -> None:
        record = {"event": event, "offline_task_id": offline_task_id,
                  "at": dt.datetime.now(dt.timezone.utc).isoformat(), **fields}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def read(self) -> tuple[dict[str, JournalEntry], set[str], list[str]]:
        """(offline id -> latest server id known, offline ids whose last import attempt never returned, warnings)."""
        imported: dict[str, JournalEntry] = {}
        attempts: dict[str, str] = {}
        warnings: list[str] = []
        if not self.path.exists():
            return imported, set(), warnings
        for n, line in enumerate(self.path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                event, oid = rec["event"], rec["offline_task_id"]
            except (ValueError, KeyError, TypeError):
                warnings.append(f"{self.path}: line {n} is not a journal record (torn write?); ignored")
                continue
            attempts[oid] = event
            if event in ("imported", "committed") and rec.get("server_task_id"):
                imported[oid] = JournalEntry(oid, rec["server_task_id"], rec.get("api_host"), event)
        interrupted = {oid for oid, event in attempts.items() if event == "importing"}
        return imported, interrupted, warnings


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    lock_path = folder / LOCK_NAME
    with open(lock_path, "a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SyncError(
                f"another `vision-pipeline clearml sync` is running on {folder} (lock {lock_path}): "
                "wait for it to finish; nothing was synced by this one"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------- report


@dataclass
class SessionOutcome:
    offline_task_id: str
    path: Path | None
    action: str  # imported | resumed | skipped | failed | pending | would-import | would-resume
    server_task_id: str | None = None
    rows_remapped: int = 0
    name: str = ""
    final_status: str | None = None
    message: str = ""

    def line(self) -> str:
        label = {"failed": "FAIL"}.get(self.action, self.action)
        target = f" -> {self.server_task_id}" if self.server_task_id else ""
        what = f"{self.name} ({self.final_status or 'no final status'})" if self.name else ""
        tail = "; ".join(x for x in (what, self.message) if x)
        return f"{label:<12} {self.offline_task_id}{target}  {tail}".rstrip()


@dataclass
class SyncReport:
    api_host: str
    dry_run: bool = False
    imported: list[SessionOutcome] = field(default_factory=list)  # imported now, or finished from the journal
    skipped: list[SessionOutcome] = field(default_factory=list)  # already synced
    failed: list[SessionOutcome] = field(default_factory=list)  # with the reason in .message
    pending: list[SessionOutcome] = field(default_factory=list)  # not attempted (run stopped, or dry run)
    warnings: list[str] = field(default_factory=list)

    @property
    def rows_remapped(self) -> int:
        return sum(o.rows_remapped for o in self.imported)

    @property
    def ok(self) -> bool:
        return not self.failed

    def lines(self) -> list[str]:
        out = [o.line() for o in (*self.imported, *self.failed, *self.pending, *self.skipped)]
        out += [f"warning: {w}" for w in self.warnings]
        if self.dry_run:
            out.append(f"dry run against {self.api_host}: {len(self.pending)} to sync, {len(self.skipped)} already "
                       f"synced, {len(self.failed)} with problems; nothing was imported or changed")
        else:
            out.append(f"{len(self.imported)} imported, {len(self.skipped)} already synced, {len(self.failed)} failed, "
                       f"{len(self.pending)} not attempted; {self.rows_remapped} job rows remapped ({self.api_host})")
        return out


# --------------------------------------------------------------------------------------------- sync


def require_online(config: ClearMLConfig) -> None:
    """:class:`SyncError` unless a server is configured (a host, and offline mode not forced)."""
    if not config.api_host:
        raise SyncError(
            "no ClearML server configured: set CLEARML_API_HOST/keys (CLEARML_API_HOST, CLEARML_API_ACCESS_KEY, "
            "CLEARML_API_SECRET_KEY) to the server to import into; nothing was synced"
        )
    if config.offline_mode:
        raise SyncError(
            f"CLEARML_OFFLINE_MODE is set, so ClearML is offline although CLEARML_API_HOST={config.api_host}: "
            "unset CLEARML_OFFLINE_MODE to sync into that server; nothing was synced"
        )


def _current_promotions(store: JobStore, offline_id: str) -> list[ModelPromotion]:
    with store.session() as s:
        return list(s.scalars(select(ModelPromotion).where(
            ModelPromotion.clearml_task_id == offline_id, ModelPromotion.is_current.is_(True))))


def sync_offline_sessions(
    tracker_config: ClearMLConfig,
    store: JobStore,
    *,
    offline_root: Path,
    importer: Any = None,
    dry_run: bool = False,
    timeout: float = HTTP_TIMEOUT,
) -> SyncReport:
    """Import every closed offline session under ``offline_root`` into the configured server (see module doc).

    ``importer`` defaults to the ClearML SDK (:class:`SDKServer`: ``Task.import_offline_session``,
    ``mark_failed``, tagging). It may be a plain callable ``path -> server task id`` (status and tags
    then go through the SDK) or an object with ``import_session``/``mark_failed``/``tag_production``.

    Raises :class:`SyncError`/:class:`ServerUnavailable` (a :class:`TrackingError`) or ``RecordsError``
    *before changing anything* when the config is offline, the server is unreachable or rejects the
    keys, or the job-record database cannot be read. Per-session problems land in the report.
    """
    require_online(tracker_config)
    tracker_config.validate()
    api_host = tracker_config.api_host.rstrip("/")
    try:
        check_server(tracker_config, timeout=timeout)
    except ServerUnavailable as exc:
        raise ServerUnavailable(f"{exc}; nothing was synced") from exc
    store.synced_session_ids()  # the database answers and has the table, before anything is imported

    offline_root = Path(offline_root)
    report = SyncReport(api_host=api_host, dry_run=dry_run)
    if not offline_root.is_dir():
        report.warnings.append(f"no offline sessions: {offline_root} does not exist")
        return report
    journal = SyncJournal(offline_root / JOURNAL_NAME)
    lock = _locked(offline_root) if not dry_run else nullcontext()
    with lock:
        synced = store.synced_session_ids()  # re-read under the lock
        journaled, interrupted, warnings = journal.read()
        report.warnings.extend(warnings)
        todo: list[tuple[str, Path | None, OfflineSession | None]] = []
        seen: set[str] = set()
        for path in find_sessions(offline_root):
            if path.stem in synced:
                report.skipped.append(SessionOutcome(path.stem, path, "skipped", message="already synced"))
                seen.add(path.stem)
                continue
            try:
                session = read_session(path)
            except SessionError as exc:
                if path.stem in journaled:
                    continue  # imported earlier; the journal alone finishes it (below)
                report.failed.append(SessionOutcome(
                    path.stem, path, "failed",
                    message=f"{exc}: skipped and left as it is (fix or remove the file; the other sessions continue)"))
                seen.add(path.stem)
                continue
            oid = session.task_id
            seen.update((oid, path.stem))
            if oid in synced:
                report.skipped.append(SessionOutcome(oid, path, "skipped", name=session.name,
                                                     final_status=session.final_status, message="already synced"))
                continue
            todo.append((oid, path, session))
        for oid, entry in journaled.items():
            if oid not in seen and oid not in synced:
                # Imported by an earlier run whose database step failed, and the session file is gone:
                # the journal alone is enough to finish the remap.
                todo.append((oid, None, None))

        stopped_at: str | None = None
        server: ServerActions | None = None
        for oid, path, session in todo:
            name = session.name if session else ""
            final = session.final_status if session else None
            if stopped_at:
                report.pending.append(SessionOutcome(oid, path, "pending", name=name, final_status=final,
                                                     message=f"not attempted: the run stopped at {stopped_at}"))
                continue
            entry = journaled.get(oid)
            if entry and (entry.api_host or "").rstrip("/") != api_host:
                report.failed.append(SessionOutcome(
                    oid, path, "failed", server_task_id=None, name=name, final_status=final,
                    message=(f"the journal {journal.path} says it was imported into {entry.api_host} as "
                             f"{entry.server_task_id}, but the configured server is {api_host}: set CLEARML_API_HOST "
                             f"back to {entry.api_host} and rerun, or delete its lines from the journal to import "
                             "it into this server")))
                continue
            if dry_run:
                report.pending.append(SessionOutcome(
                    oid, path, "would-resume" if entry else "would-import",
                    server_task_id=entry.server_task_id if entry else None, name=name, final_status=final,
                    message="imported earlier; would finish the remap without importing again" if entry else ""))
                continue
            if server is None:
                server = _server(importer, tracker_config)
            outcome = _sync_one(oid, path, session, entry, oid in interrupted, api_host=api_host,
                                server=server, store=store, journal=journal, report=report)
            if outcome.action == "failed":
                report.failed.append(outcome)
                stopped_at = oid
            else:
                report.imported.append(outcome)
    return report


def _sync_one(
    oid: str,
    path: Path | None,
    session: OfflineSession | None,
    entry: JournalEntry | None,
    interrupted_before: bool,
    *,
    api_host: str,
    server: ServerActions,
    store: JobStore,
    journal: SyncJournal,
    report: SyncReport,
) -> SessionOutcome:
    name = session.name if session else ""
    final = session.final_status if session else None
    out = SessionOutcome(oid, path, "imported", name=name, final_status=final)

    # 1-2. import, journaled on both sides
    if entry is not None:
        new_id = entry.server_task_id
        out.action = "resumed"
        out.message = "imported by an earlier run (journal); finished without importing again"
    else:
        if interrupted_before:
            report.warnings.append(
                f"an earlier import of {oid} ({name}) never returned: the server may hold a partial copy of it "
                "(check the project in the web UI and delete it); importing again")
        try:
            journal.append("importing", oid, api_host=api_host, session_path=str(path))
        except OSError as exc:
            out.action = "failed"
            out.message = f"cannot write the sync journal {journal.path} ({exc.strerror or exc}): fix its permissions; not imported"
            return out
        try:
            new_id = server.import_session(path)
        except Exception as exc:  # noqa: BLE001 - whatever the SDK raised, the session stays untouched
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            try:
                journal.append("import-failed", oid, api_host=api_host, reason=text[:500])
            except OSError:
                pass
            out.action = "failed"
            out.message = (f"import failed ({type(exc).__name__}: {text}); the job rows were not changed and the "
                           f"session is untouched. The server may hold a partial task '{name}' from this attempt "
                           "(delete it in the web UI). Rerun `vision-pipeline clearml sync` to retry")
            return out
        try:
            journal.append("imported", oid, server_task_id=new_id, api_host=api_host, session_path=str(path))
        except OSError as exc:
            report.warnings.append(
                f"{oid} was imported as {new_id} but the journal {journal.path} could not record it "
                f"({exc.strerror or exc}); recording it in the database now")
    out.server_task_id = new_id

    # 3. the real final status (the import marks every task completed), then promotions (best effort)
    if session is None:
        report.warnings.append(
            f"{oid}: its session file is gone, so its final status could not be re-applied to {new_id}")
    elif final == "failed":
        reason = str(session.status.get("status_reason") or "failed (recorded offline)")
        try:
            server.mark_failed(new_id, reason)
        except Exception as exc:  # noqa: BLE001
            out.action = "failed"
            out.message = (f"imported as {new_id}, but its final status 'failed' could not be set on the server "
                           f"({type(exc).__name__}: {exc}); the job rows were not changed. Rerun "
                           "`vision-pipeline clearml sync`: it finishes from the journal without importing again")
            return out
    elif final is None:
        report.warnings.append(
            f"{oid} ({name}) has no recorded final status (the process ended before the task finished): "
            f"the server shows {new_id} as completed")

    model_map: dict[str, str] = {}
    try:
        promotions = _current_promotions(store, oid)
    except Exception as exc:  # noqa: BLE001 - the transaction below reports the database problem
        promotions = []
        log.debug("reading promotions of %s failed: %s", oid, exc)
    if promotions:
        offline_models = {m.get("id"): (m.get("init") or {}).get("name") for m in (session.models if session else [])}
        names = sorted({offline_models[p.clearml_model_id] for p in promotions
                        if p.clearml_model_id in offline_models and offline_models[p.clearml_model_id]})
        try:
            by_name = server.tag_production(new_id, names)
            model_map = {old: by_name[n] for old, n in offline_models.items() if n in by_name and old}
        except Exception as exc:  # noqa: BLE001 - best effort by design
            report.warnings.append(
                f"{oid} is the current production model but tagging {new_id} '{PRODUCTION_TAG}' on the server "
                f"failed ({type(exc).__name__}: {exc}): add the tag in the web UI")

    # 4. one transaction: remap + record
    try:
        with store.session() as s:
            rows = store.remap_clearml_task_id(oid, new_id, session=s)
            for old_model, new_model in model_map.items():
                s.execute(update(ModelPromotion).where(ModelPromotion.clearml_model_id == old_model)
                          .values(clearml_model_id=new_model))
            s.add(ClearMLSyncedSession(offline_task_id=oid, server_task_id=new_id,
                                       session_path=str(path) if path else "", api_host=api_host, rows_remapped=rows))
    except Exception as exc:  # noqa: BLE001 - rolled back; the journal finishes it next time
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        out.action = "failed"
        out.message = (f"imported into {api_host} as {new_id} (recorded in {journal.path}), but the job records "
                       f"could not be updated ({text}); the database is unchanged. Rerun `vision-pipeline clearml "
                       "sync` once the database works: it finishes the remap without importing again")
        return out
    out.rows_remapped = rows

    # 5.
    try:
        journal.append("committed", oid, server_task_id=new_id, api_host=api_host, rows_remapped=rows)
    except OSError:
        pass  # the database row is the record; the journal line is only a log here
    return out
