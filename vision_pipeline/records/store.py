"""Job records: one row per materialisation, following it from pending to completed or failed.

Plain SQLAlchemy 2.0 — the Dagster resource, the CLI and the tests all use this class.
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from typing import Any, Iterator

from sqlalchemy import create_engine, event, select, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from . import migrate
from .errors import RecordsError
from .models import JOB_TABLES, ClearMLSyncedSession, MLflowImport, ModelPromotion

__all__ = ["JobStore", "RecordsError", "JOB_TABLES", "redact_url"]


def redact_url(url: str) -> str:
    """The URL with its password replaced by ***, safe for logs and messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def _explain(url: str, exc: Exception) -> RecordsError:
    """Turn a driver error into one sentence: what is wrong and how to fix it."""
    text = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0] if str(exc) else type(exc).__name__
    safe = redact_url(url)
    low = text.lower()
    if "password authentication failed" in low or "authentication failed" in low or "role" in low and "does not exist" in low:
        hint = "wrong credentials: check the user and password in VISION_PIPELINE_DATABASE_URL"
    elif "database" in low and "does not exist" in low:
        hint = "the database does not exist: create it (createdb) or fix the name in VISION_PIPELINE_DATABASE_URL"
    elif "connection refused" in low or "could not connect" in low or "timeout" in low or "could not translate host" in low:
        hint = "the server is unreachable: start PostgreSQL or fix host/port in VISION_PIPELINE_DATABASE_URL"
    elif "unable to open database file" in low:
        hint = "the SQLite file cannot be created: check that its folder exists and is writable"
    elif "no such table" in low or ("relation" in low and "does not exist" in low):
        hint = "the schema is missing: run `vision-pipeline db upgrade`"
    else:
        hint = "see the driver's message"
    return RecordsError(f"job-record database {safe}: {hint} ({text})")


class JobStore:
    """Job rows in ``dataset_jobs``, ``training_jobs``, ``export_jobs``, ``inference_jobs``."""

    def __init__(self, url: str, *, echo: bool = False, connect_timeout: int = 5) -> None:
        self.url = url
        connect_args: dict[str, Any] = {}
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise RecordsError(f"VISION_PIPELINE_DATABASE_URL is not a valid SQLAlchemy URL: {exc}") from exc
        if parsed.get_backend_name() == "postgresql":
            connect_args["connect_timeout"] = connect_timeout
        try:
            self.engine: Engine = create_engine(url, echo=echo, pool_pre_ping=True, connect_args=connect_args)
        except (NoSuchModuleError, ModuleNotFoundError) as exc:
            raise RecordsError(f"job-record database {redact_url(url)}: no driver for this URL ({exc})") from exc
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    # -- schema -----------------------------------------------------------------------------
    def ping(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except OperationalError as exc:
            raise _explain(self.url, exc) from exc

    def current_revision(self) -> str | None:
        try:
            return migrate.current(self.engine)
        except OperationalError as exc:
            raise _explain(self.url, exc) from exc

    def upgrade(self, target: str = "head") -> str | None:
        try:
            return migrate.upgrade(self.engine, target)
        except OperationalError as exc:
            raise _explain(self.url, exc) from exc

    def downgrade(self, target: str = "-1") -> str | None:
        try:
            return migrate.downgrade(self.engine, target)
        except OperationalError as exc:
            raise _explain(self.url, exc) from exc

    def ensure_schema(self, auto_migrate: bool = True) -> None:
        """Upgrade to head when allowed; otherwise fail clearly if the schema is behind."""
        rev = self.current_revision()
        if rev == migrate.head():
            return
        if auto_migrate:
            self.upgrade("head")
            return
        raise RecordsError(
            f"job-record database {redact_url(self.url)} is at revision {rev or 'none'}, "
            f"the code needs {migrate.head()}: run `vision-pipeline db upgrade`"
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        try:
            with self._sessions.begin() as session:
                yield session
        except (OperationalError, ProgrammingError) as exc:
            raise _explain(self.url, exc) from exc

    def dispose(self) -> None:
        self.engine.dispose()

    # -- job lifecycle ------------------------------------------------------------------------
    @staticmethod
    def _model(kind: str):
        try:
            return JOB_TABLES[kind]
        except KeyError:
            raise ValueError(f"unknown job kind {kind!r}; expected one of {sorted(JOB_TABLES)}") from None

    def create_job(
        self,
        kind: str,
        *,
        config: dict[str, Any] | None = None,
        dagster_run_id: str | None = None,
        project_id: int = 1,
        **fields: Any,
    ) -> int:
        """A pending row. A retry of the same Dagster run reuses its unfinished row instead of adding one."""
        model = self._model(kind)
        with self.session() as s:
            row = None
            if dagster_run_id:
                row = s.scalars(
                    select(model)
                    .where(model.dagster_run_id == dagster_run_id, model.status != "completed")
                    .order_by(model.id.desc())
                ).first()
            if row is None:
                row = model(dagster_run_id=dagster_run_id)
                s.add(row)
            row.status = "pending"
            row.project_id = project_id
            row.config = config
            row.error = None
            row.result = None
            row.started_at = row.finished_at = None
            for key, value in fields.items():
                setattr(row, key, value)
            s.flush()
            return row.id

    def start_job(self, kind: str, job_id: int, *, clearml_task_id: str | None = None) -> None:
        self._update(kind, job_id, status="running", started_at=_now(), clearml_task_id=clearml_task_id)

    def update_job(self, kind: str, job_id: int, **fields: Any) -> None:
        self._update(kind, job_id, **fields)

    def complete_job(self, kind: str, job_id: int, result: dict[str, Any] | None = None) -> None:
        self._update(kind, job_id, status="completed", finished_at=_now(), result=result, error=None)

    def fail_job(self, kind: str, job_id: int, error: str) -> None:
        self._update(kind, job_id, status="failed", finished_at=_now(), error=error[:10_000])

    def _update(self, kind: str, job_id: int, **fields: Any) -> None:
        model = self._model(kind)
        values = {k: v for k, v in fields.items() if v is not None or k in ("error", "result")}
        with self.session() as s:
            done = s.execute(update(model).where(model.id == job_id).values(**values)).rowcount
            if not done:
                raise RecordsError(f"{model.__tablename__} has no row with id {job_id}")

    def get_job(self, kind: str, job_id: int) -> dict[str, Any]:
        model = self._model(kind)
        with self.session() as s:
            row = s.get(model, job_id)
            if row is None:
                raise RecordsError(f"{model.__tablename__} has no row with id {job_id}")
            return _row_dict(kind, row)

    def list_jobs(self, kind: str | None = None, *, limit: int = 50, status: str | None = None) -> list[dict[str, Any]]:
        kinds = [kind] if kind else list(JOB_TABLES)
        rows: list[dict[str, Any]] = []
        with self.session() as s:
            for k in kinds:
                model = self._model(k)
                query = select(model).order_by(model.id.desc()).limit(limit)
                if status:
                    query = query.where(model.status == status)
                rows.extend(_row_dict(k, r) for r in s.scalars(query))
        rows.sort(key=lambda r: r["created_at"] or "", reverse=True)
        return rows[:limit]

    def find_by_clearml_task(self, task_id: str) -> list[dict[str, Any]]:
        out = []
        with self.session() as s:
            for k, model in JOB_TABLES.items():
                out.extend(_row_dict(k, r) for r in s.scalars(select(model).where(model.clearml_task_id == task_id)))
        return out

    def remap_clearml_task_id(self, old: str, new: str, *, session: Session | None = None) -> int:
        """Point every row (jobs, promotions, MLflow mapping) that names ``old`` at ``new``; returns how many changed."""

        def _do(s: Session) -> int:
            changed = 0
            for model in (*JOB_TABLES.values(), ModelPromotion, MLflowImport):
                changed += s.execute(
                    update(model).where(model.clearml_task_id == old).values(clearml_task_id=new)
                ).rowcount
            return changed

        if session is not None:
            return _do(session)
        with self.session() as s:
            return _do(s)

    def synced_session_ids(self) -> set[str]:
        with self.session() as s:
            return set(s.scalars(select(ClearMLSyncedSession.offline_task_id)))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _row_dict(kind: str, row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": kind}
    for column in row.__table__.columns:
        value = getattr(row, column.key)
        out[column.key] = _iso(value) if isinstance(value, dt.datetime) else value
    return out


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
