"""Import MLflow runs and registered models into ClearML and link them to the job records.

``import_runs`` reads runs through MLflow's own client (any tracking URI MLflow supports) and writes
one ClearML task per run through ``ClearMLTracker`` - offline sessions by default, a server when one
is configured. What maps to what (see docs/migrating-from-mlflow.md for the operator's view):

* experiment -> ClearML project (or ``project_map[experiment]``); run name -> task name;
* run status: FINISHED -> completed, FAILED/KILLED/unfinished -> failed with reason
  ``MLflow run status <STATUS>``;
* params -> hyperparameters (section ``General``); tags -> task tags ``key:value``;
  ``mlflow.*`` system tags, run id, experiment, start/end time -> user properties;
* every point of every metric's history -> a scalar ``metric_title_series(key)`` at iteration = step;
* run artifacts -> task artifacts named by their path in the run (``plots/sub/a.png``); MLflow 3
  logged models of the run that are not registered -> artifacts ``logged_models/<name>/<path>``;
* registered model versions -> output models of the task of the run that produced them, tags
  ``version:N``, ``stage:S``, ``alias:A``; a model folder is registered as one ``.zip``.

The mapping MLflow run id -> ClearML task id lives in the job-record table ``mlflow_imports``. A row
is written ``started`` (with the task id) before anything is logged and ``imported``/``partial``/
``failed`` after the task is closed, in the same transaction that points the ``training_jobs`` rows
with that ``mlflow_run_id`` at the task. Re-running skips ``imported`` and ``partial`` runs, retries
``failed`` ones, and treats ``started`` as an interrupted import: that task is abandoned (marked
failed) and the run is imported again into a new task.

Problems with one run (missing artifact, NaN/inf points, very long values, an unreadable model) make
that run ``partial`` or ``failed`` with the reason; the import goes on with the next run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence
from urllib.parse import unquote, urlparse, urlunparse

from vision_pipeline.settings import temporary_env
from vision_pipeline.tracking.clearml_session import (
    STATUS_FILE,
    ClearMLTracker,
    TrackedTask,
    TrackingError,
    metric_title_series,
)

log = logging.getLogger(__name__)

IMPORT_TAG = "mlflow-import"
PARTIAL_TAG = "mlflow-import-partial"
PARAM_SECTION = "General"
MAX_VALUE_CHARS = 1000           # hyperparameter / property values longer than this are truncated
MAX_TAG_CHARS = 200              # a task tag longer than this is truncated
TRUNCATION_MARKER = "…[truncated: full value in artifact mlflow_long_values]"
LONG_VALUES_ARTIFACT = "mlflow_long_values"
RUNS_PER_READ = 20               # runs whose metric histories are read in one query (SQL stores)
_DBL_MAX = sys.float_info.max    # MLflow's SQL store saves +/-inf as +/-DBL_MAX
# MLflow run status -> (ClearML final status, reason)
_STATUS = {
    "FINISHED": ("completed", None),
    "FAILED": ("failed", "MLflow run status FAILED"),
    "KILLED": ("failed", "MLflow run status KILLED"),
}
_FLAVOR_FRAMEWORK = {
    "pytorch": "PyTorch", "sklearn": "ScikitLearn", "onnx": "ONNX", "tensorflow": "TensorFlow",
    "keras": "Keras", "xgboost": "XGBoost", "lightgbm": "LightGBM", "catboost": "CatBoost",
    "paddle": "PaddlePaddle", "openvino": "OpenVINO",
}


class MLflowImportError(RuntimeError):
    """The import cannot start at all (unreachable tracking URI, unreadable store): what and how to fix."""


# --------------------------------------------------------------------------------------------- results
@dataclass
class RunReport:
    """What happened to one MLflow run."""

    run_id: str
    experiment: str = ""
    name: str = ""  # the MLflow run name
    task_name: str = ""  # the ClearML task name (the run name, padded when ClearML would reject it)
    outcome: str = "pending"  # imported | partial | failed | skipped | would-import | would-skip
    clearml_task_id: str | None = None
    project: str | None = None
    mlflow_status: str | None = None
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    params: int = 0
    metrics: int = 0
    metric_points: int = 0
    skipped_points: int = 0
    artifacts: int = 0
    bytes_moved: int = 0
    models: list[str] = field(default_factory=list)
    job_rows_linked: int = 0

    def label(self) -> str:
        name = f" {self.name!r}" if self.name and self.name != self.run_id else ""
        exp = f" (experiment {self.experiment!r})" if self.experiment else ""
        return f"run {self.run_id}{name}{exp}"


@dataclass
class ImportSummary:
    tracking_uri: str
    dry_run: bool = False
    runs: list[RunReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def _count(self, *outcomes: str) -> int:
        return sum(1 for r in self.runs if r.outcome in outcomes)

    @property
    def runs_seen(self) -> int:
        return sum(1 for r in self.runs if r.outcome != "failed" or r.experiment)

    @property
    def imported(self) -> int:
        return self._count("imported")

    @property
    def partial(self) -> int:
        return self._count("partial")

    @property
    def skipped(self) -> int:
        return self._count("skipped", "would-skip")

    @property
    def failed(self) -> int:
        return self._count("failed")

    @property
    def would_import(self) -> int:
        return self._count("would-import")

    @property
    def metric_points(self) -> int:
        return sum(r.metric_points for r in self.runs)

    @property
    def skipped_points(self) -> int:
        return sum(r.skipped_points for r in self.runs)

    @property
    def bytes_moved(self) -> int:
        return sum(r.bytes_moved for r in self.runs)

    @property
    def job_rows_linked(self) -> int:
        return sum(r.job_rows_linked for r in self.runs)

    @property
    def ok(self) -> bool:
        """No run failed and every requested experiment/run existed (partial imports are reported, not errors)."""
        return not self.failed and not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "tracking_uri": self.tracking_uri, "dry_run": self.dry_run, "runs_seen": self.runs_seen,
            "imported": self.imported, "partial": self.partial, "skipped": self.skipped, "failed": self.failed,
            "would_import": self.would_import, "metric_points": self.metric_points,
            "skipped_points": self.skipped_points, "bytes_moved": self.bytes_moved,
            "job_rows_linked": self.job_rows_linked, "seconds": round(self.seconds, 3),
            "problems": list(self.problems), "notes": list(self.notes), "runs": [asdict(r) for r in self.runs],
        }

    def lines(self) -> list[str]:
        out: list[str] = []
        if self.dry_run:
            out.append(
                f"dry run, nothing changed - {self.tracking_uri}: {self.runs_seen} runs seen, "
                f"{self.would_import} would be imported, {self.skipped} would be skipped (already imported), "
                f"{self.failed} cannot be read; {self.metric_points:,} metric points "
                f"({self.skipped_points:,} NaN/inf would be skipped), {_size(self.bytes_moved)} to move"
            )
        else:
            out.append(
                f"MLflow import from {self.tracking_uri}: {self.runs_seen} runs seen, {self.imported} imported, "
                f"{self.partial} partially imported, {self.skipped} skipped (already imported), {self.failed} failed"
            )
            out.append(
                f"  {self.metric_points:,} metric points ({self.skipped_points:,} NaN/inf points skipped), "
                f"{_size(self.bytes_moved)} of artifacts and models moved, {self.job_rows_linked} job rows linked, "
                f"{self.seconds:.1f} s"
            )
        for r in self.runs:
            if r.outcome == "partial":
                out.append(f"  partial: {r.label()} -> task {r.clearml_task_id}: " + "; ".join(r.reasons))
            elif r.outcome == "failed":
                out.append(f"  FAILED: {r.label()}: " + "; ".join(r.reasons))
            elif r.outcome == "would-import" and r.reasons:
                out.append(f"  would be partial: {r.label()}: " + "; ".join(r.reasons))
        out.extend(f"  problem: {p}" for p in self.problems)
        out.extend(f"  note: {n}" for n in self.notes)
        return out


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


# ------------------------------------------------------------------------------------------ helpers
def redact_uri(uri: str) -> str:
    """The URI with any password replaced by ***."""
    try:
        parsed = urlparse(uri)
    except ValueError:
        return uri
    if parsed.password:
        netloc = f"{parsed.username}:***@{parsed.hostname}" + (f":{parsed.port}" if parsed.port else "")
        return urlunparse(parsed._replace(netloc=netloc))
    return uri


def _local_path(uri: str | None) -> Path | None:
    """A local filesystem path for a ``file:`` URI or a plain path; None for remote URIs."""
    if not uri:
        return None
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(uri)
    return None


def is_file_store(uri: str) -> bool:
    """A legacy MLflow file store (``./mlruns``, ``/path``, ``file:...``), which MLflow 3 gates behind a variable."""
    return _local_path(uri) is not None


def _iso(ms: int | None) -> str:
    if not ms:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).isoformat(timespec="milliseconds")


def _clearml_name(name: str, what: str) -> str:
    """ClearML rejects names (and project path parts) shorter than 3 characters; pad them visibly."""
    name = " ".join(str(name).split())  # no newlines/tabs in names
    if what == "project":
        parts = [p.strip() for p in name.split("/") if p.strip()]
        parts = [p if len(p) >= 3 else f"{p} (mlflow)" for p in parts] or ["MLflow import"]
        return "/".join(parts)
    if len(name) < 3:
        return f"{name} (mlflow)" if name else "MLflow run"
    return name


def _truncate(value: str, limit: int, marker: str = TRUNCATION_MARKER) -> str:
    return value if len(value) <= limit else value[: max(0, limit - len(marker))] + marker


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """The SDK prints three lines per task; keep the command's output for the summary."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield
    for line in buffer.getvalue().splitlines():
        if line.strip():
            log.debug("clearml: %s", line)


# ----------------------------------------------------------------------------------- MLflow source
@dataclass
class _Version:
    name: str
    version: str
    stage: str
    run_id: str
    source: str
    aliases: list[str]
    tags: dict[str, str]
    description: str
    created: int | None


class _MLflowSource:
    """Everything read from MLflow, through ``MlflowClient``."""

    def __init__(self, tracking_uri: str, registry_uri: str | None = None) -> None:
        self.uri = tracking_uri
        self.safe_uri = redact_uri(tracking_uri)
        self._check_uri()
        try:
            from mlflow import MlflowClient
        except ImportError as exc:  # pragma: no cover - mlflow is a dependency
            raise MLflowImportError(f"the mlflow package is not installed ({exc}): pip install mlflow") from exc
        try:
            self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri)
        except Exception as exc:  # noqa: BLE001 - MLflow raises many types for a bad store
            raise MLflowImportError(self._explain(exc)) from exc
        self._probe()

    # -- reachability ----------------------------------------------------------------------------
    def _check_uri(self) -> None:
        uri = self.uri
        if not uri or not uri.strip():
            raise MLflowImportError("--tracking-uri is empty: give sqlite:///path/mlflow.db, http(s)://server or ./mlruns")
        if uri.startswith("sqlite:"):
            path = uri.split(":///", 1)[1] if ":///" in uri else ""
            if path and path != ":memory:" and not Path(path).is_file():
                raise MLflowImportError(
                    f"MLflow tracking URI {self.safe_uri}: no SQLite database at {path} "
                    "(MLflow would create an empty one): check the path"
                )
        elif is_file_store(uri):
            path = _local_path(uri)
            if not path.is_dir():
                raise MLflowImportError(
                    f"MLflow tracking URI {self.safe_uri}: no MLflow file store at {path} (no such folder)"
                )
            # MLflow 3 refuses the legacy file store unless this is set (for this process); reading it is
            # exactly what we want.
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"

    def _probe(self) -> None:
        """One cheap call, without MLflow's minutes of HTTP retries, so a wrong URI fails in seconds."""
        try:
            with temporary_env({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}, {"MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}):
                self.client.search_experiments(max_results=1)
        except Exception as exc:  # noqa: BLE001
            raise MLflowImportError(self._explain(exc)) from exc

    def _explain(self, exc: Exception) -> str:
        text = _reason(exc)
        low = text.lower()
        if any(s in low for s in ("connection refused", "max retries", "failed to establish", "name or service",
                                  "timed out", "connecterror", "connectionerror", "temporary failure")):
            hint = "the tracking server is unreachable: check the URI and that the server is up"
        elif "401" in low or "403" in low or "unauthorized" in low or "permission" in low:
            hint = "the server refused access: set MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/PASSWORD"
        elif "out-of-date database schema" in low or "mlflow db upgrade" in low:
            hint = "the MLflow database schema is older than this MLflow: run `mlflow db upgrade <URI>` on a copy first"
        elif "file store" in low or "mlflow_allow_file_store" in low:
            hint = "MLflow refused the file store: set MLFLOW_ALLOW_FILE_STORE=true"
        else:
            hint = "MLflow could not read it"
        return f"MLflow tracking URI {self.safe_uri}: {hint} ({text})"

    # -- runs ------------------------------------------------------------------------------------
    def experiments(self, names: Sequence[str]) -> tuple[list[Any], list[str]]:
        from mlflow.entities import ViewType

        if not names:
            found = list(self._paged(lambda token: self.client.search_experiments(
                view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)))
            return found, []
        found, problems = [], []
        for name in names:
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                known = sorted(e.name for e in self._paged(lambda token: self.client.search_experiments(
                    view_type=ViewType.ALL, max_results=1000, page_token=token)))
                shown = ", ".join(repr(k) for k in known[:10]) + (" ..." if len(known) > 10 else "")
                problems.append(f"experiment {name!r} does not exist in {self.safe_uri} (experiments: {shown or 'none'})")
            elif exp.lifecycle_stage != "active":
                problems.append(f"experiment {name!r} is deleted in MLflow; restore it to import its runs")
            else:
                found.append(exp)
        return found, problems

    def runs(self, experiment_ids: Sequence[str]) -> list[Any]:
        from mlflow.entities import ViewType

        if not experiment_ids:
            return []
        return list(self._paged(lambda token: self.client.search_runs(
            list(experiment_ids), run_view_type=ViewType.ACTIVE_ONLY, max_results=1000,
            order_by=["attributes.start_time ASC"], page_token=token)))

    def run(self, run_id: str) -> Any:
        return self.client.get_run(run_id)

    def experiment_name(self, experiment_id: str, cache: dict[str, str]) -> str:
        if experiment_id not in cache:
            try:
                cache[experiment_id] = self.client.get_experiment(experiment_id).name
            except Exception:  # noqa: BLE001
                cache[experiment_id] = f"experiment {experiment_id}"
        return cache[experiment_id]

    @staticmethod
    def _paged(call: Callable[[str | None], Any]) -> Iterator[Any]:
        token = None
        while True:
            page = call(token)
            yield from page
            token = getattr(page, "token", None)
            if not token:
                return

    # -- metrics ---------------------------------------------------------------------------------
    def metric_histories(self, runs: Sequence[Any]) -> dict[str, dict[str, list[tuple[int, float]]]]:
        """run id -> metric key -> [(step, value)] in MLflow's order (timestamp, step, value)."""
        out = self._sql_histories([r.info.run_id for r in runs])
        if out is not None:
            return out
        out = {}
        for run in runs:
            per_key = out.setdefault(run.info.run_id, {})
            for key in run.data.metrics:
                per_key[key] = [(m.step, m.value) for m in self.client.get_metric_history(run.info.run_id, key)]
        return out

    def _sql_histories(self, run_ids: list[str]) -> dict[str, dict[str, list[tuple[int, float]]]] | None:
        """SQL-backed stores: every history of these runs in one query, through MLflow's own store and
        table model (the rows ``get_metric_history`` builds entities from). None where that is not possible."""
        try:
            from mlflow.store.tracking.dbmodels.models import SqlMetric
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
            from sqlalchemy import select

            store = self.client._tracking_client.store  # noqa: SLF001 - see docstring
            if not isinstance(store, SqlAlchemyStore) or not run_ids:
                return None
            query = (
                select(SqlMetric.run_uuid, SqlMetric.key, SqlMetric.step, SqlMetric.value, SqlMetric.is_nan)
                .where(SqlMetric.run_uuid.in_(run_ids))
                .order_by(SqlMetric.run_uuid, SqlMetric.key, SqlMetric.timestamp, SqlMetric.step, SqlMetric.value)
            )
            out: dict[str, dict[str, list[tuple[int, float]]]] = {rid: {} for rid in run_ids}
            nan = float("nan")
            with store.ManagedSessionMaker() as session:
                rows = session.execute(query).all()
            current_run = current_key = None
            points: list[tuple[int, float]] = []
            for run_uuid, key, step, value, is_nan in rows:
                if key != current_key or run_uuid != current_run:
                    points = out[run_uuid].setdefault(key, [])
                    current_run, current_key = run_uuid, key
                points.append((step, nan if is_nan else value))
            return out
        except Exception as exc:  # noqa: BLE001 - fall back to the public per-metric API
            log.debug("bulk metric read unavailable (%s); using get_metric_history", exc)
            return None

    # -- artifacts -------------------------------------------------------------------------------
    def artifact_files(self, artifact_uri: str, run_id: str) -> tuple[list[tuple[str, Path | None, int | None]], list[str]]:
        """(relative path, local path or None when remote, size) of every file; and per-file problems."""
        files: list[tuple[str, Path | None, int | None]] = []
        problems: list[str] = []
        root = _local_path(artifact_uri)
        if root is not None:
            if not root.is_dir():
                return files, problems
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for fname in sorted(filenames):
                    full = Path(dirpath) / fname
                    rel = full.relative_to(root).as_posix()
                    try:
                        size = full.stat().st_size
                    except OSError as exc:
                        problems.append(f"artifact {rel!r} is missing on disk ({full}: {exc.strerror or exc}); not uploaded")
                        continue
                    files.append((rel, full, size))
            return files, problems

        def walk(path: str | None) -> None:
            for info in self.client.list_artifacts(run_id, path):
                if info.is_dir:
                    walk(info.path)
                else:
                    files.append((info.path, None, info.file_size))

        try:
            walk(None)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"artifacts could not be listed ({_reason(exc)}); none uploaded")
        return files, problems

    def download(self, run_id: str, rel: str, dst: Path) -> Path:
        import mlflow.artifacts

        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=rel, dst_path=str(dst),
                                                         tracking_uri=self.uri))

    def logged_model_folders(self, run: Any) -> tuple[list[tuple[str, str]], list[str]]:
        """MLflow 3 logged models of this run (stored outside the run's artifact folder): (name, artifact URI);
        and the ones that could not be read."""
        out, problems = [], []
        outputs = getattr(run, "outputs", None)
        for output in getattr(outputs, "model_outputs", None) or []:
            try:
                model = self.client.get_logged_model(output.model_id)
                out.append((model.name or model.model_id, model.artifact_location))
            except Exception as exc:  # noqa: BLE001
                problems.append(f"logged model {output.model_id} could not be read ({_reason(exc)}); not uploaded")
        return out, problems

    # -- registry --------------------------------------------------------------------------------
    def model_versions(self) -> tuple[dict[str, list[_Version]], list[str], list[str]]:
        """run id -> its registered model versions; problems (the registry is unreadable); notes."""
        by_run: dict[str, list[_Version]] = {}
        try:
            aliases: dict[tuple[str, str], list[str]] = {}
            for rm in self._paged(lambda token: self.client.search_registered_models(max_results=1000, page_token=token)):
                for alias, version in (getattr(rm, "aliases", None) or {}).items():
                    aliases.setdefault((rm.name, str(version)), []).append(alias)
            orphans = 0
            for mv in self._paged(lambda token: self.client.search_model_versions(max_results=10000, page_token=token)):
                if not mv.run_id:
                    orphans += 1
                    continue
                by_run.setdefault(mv.run_id, []).append(_Version(
                    name=mv.name, version=str(mv.version), stage=mv.current_stage or "None", run_id=mv.run_id,
                    source=mv.source or "", aliases=sorted(aliases.get((mv.name, str(mv.version)), [])),
                    tags=dict(mv.tags or {}), description=mv.description or "", created=mv.creation_timestamp,
                ))
        except Exception as exc:  # noqa: BLE001 - a tracking server without a registry, an old store
            return {}, [f"the MLflow model registry could not be read ({_reason(exc)}); no registered model was "
                        "imported (give --registry-uri if the registry lives elsewhere)"], []
        notes = []
        if orphans:
            notes.append(f"{orphans} registered model version(s) have no source run and are not imported")
        for versions in by_run.values():
            versions.sort(key=lambda v: (v.name, int(v.version) if v.version.isdigit() else 0))
        return by_run, [], notes

    def model_location(self, version: _Version) -> str:
        try:
            return self.client.get_model_version_download_uri(version.name, version.version)
        except Exception:  # noqa: BLE001
            return version.source


# ----------------------------------------------------------------------------------------- mapping
class _Mapping:
    """``mlflow_imports`` rows and the ``training_jobs`` link, in the job-record database."""

    def __init__(self, store: Any, tracking_uri: str) -> None:
        self.store = store  # None in a dry run against a database that does not exist yet
        self.uri = tracking_uri
        self.overwritten: list[str] = []

    def rows(self) -> dict[str, dict[str, Any]]:
        from sqlalchemy import select

        from vision_pipeline.records.models import MLflowImport

        if self.store is None:
            return {}
        with self.store.session() as s:
            return {
                r.mlflow_run_id: {"status": r.status, "clearml_task_id": r.clearml_task_id,
                                  "details": dict(r.details or {})}
                for r in s.scalars(select(MLflowImport))
            }

    def job_rows(self, run_id: str) -> int:
        from sqlalchemy import func, select

        from vision_pipeline.records.models import TrainingJob

        if self.store is None:
            return 0
        with self.store.session() as s:
            return s.scalar(select(func.count()).select_from(TrainingJob).where(TrainingJob.mlflow_run_id == run_id)) or 0

    def write(self, run_id: str, *, status: str, task_id: str | None, experiment: str,
              details: Mapping[str, Any], link: bool = False) -> int:
        """Insert or update the row; with ``link``, point the job rows at the task in the same transaction."""
        from sqlalchemy import select, update

        from vision_pipeline.records.models import MLflowImport, TrainingJob

        with self.store.session() as s:
            row = s.scalars(select(MLflowImport).where(MLflowImport.mlflow_run_id == run_id)).first()
            if row is None:
                row = MLflowImport(mlflow_run_id=run_id)
                s.add(row)
            details = dict(details)
            linked = 0
            if link and task_id:
                # What each job row pointed at before its first link, so a rollback can restore it exactly.
                before = dict(details.get("job_rows_before") or {})
                for job_id, old in s.execute(select(TrainingJob.id, TrainingJob.clearml_task_id)
                                             .where(TrainingJob.mlflow_run_id == run_id)):
                    before.setdefault(str(job_id), old)
                    if old and old != task_id and old not in details.get("previous_task_ids", []):
                        self.overwritten.append(f"training job {job_id} pointed at ClearML task {old}; now at {task_id}")
                details["job_rows_before"] = before
                linked = s.execute(
                    update(TrainingJob).where(TrainingJob.mlflow_run_id == run_id).values(clearml_task_id=task_id)
                ).rowcount or 0
            row.status = status
            row.clearml_task_id = task_id
            row.tracking_uri = redact_uri(self.uri)
            row.experiment_name = experiment[:255]
            row.details = json.loads(json.dumps(details, default=str))
            row.imported_at = dt.datetime.now(dt.timezone.utc)
            return linked


# ----------------------------------------------------------------------------------------- importer
class _Importer:
    def __init__(self, source: _MLflowSource, tracker: ClearMLTracker | None, mapping: _Mapping,
                 project_map: Mapping[str, str], summary: ImportSummary, echo: Callable[[str], None],
                 retry_partial: bool) -> None:
        self.source = source
        self.tracker = tracker
        self.mapping = mapping
        self.project_map = dict(project_map)
        self.summary = summary
        self.echo = echo
        self.retry_partial = retry_partial

    def project_for(self, experiment: str) -> str:
        return _clearml_name(self.project_map.get(experiment, experiment), "project")

    # -- one run ---------------------------------------------------------------------------------
    def dry_run(self, run: Any, experiment: str, history: dict[str, list[tuple[int, float]]],
                versions: list[_Version], previous: dict[str, Any] | None) -> RunReport:
        rep = self._report(run, experiment)
        if previous and self._skip(previous):
            rep.outcome = "would-skip"
            rep.clearml_task_id = previous.get("clearml_task_id")
            self.echo(f"would skip {rep.label()}: already {previous['status']} as ClearML task {rep.clearml_task_id}")
            return rep
        rep.outcome = "would-import"
        self._check_values(run, rep, {})
        for key, points in history.items():
            bad = sum(1 for _, v in points if not (-_DBL_MAX < v < _DBL_MAX))
            rep.metrics += 1
            rep.metric_points += len(points) - bad
            rep.skipped_points += bad
            if bad:
                rep.reasons.append(f"metric {key!r}: {bad} of {len(points)} points are NaN/inf")
        files, problems = self.source.artifact_files(run.info.artifact_uri, run.info.run_id)
        rep.reasons.extend(problems)
        rep.artifacts = len(files)
        rep.bytes_moved = sum(size or 0 for _, _, size in files)
        for v in versions:
            local = _local_path(self.source.model_location(v))
            if local is not None and not local.exists():
                rep.reasons.append(f"registered model {v.name!r} version {v.version}: its files are missing on disk "
                                   f"({local})")
            else:
                rep.models.append(f"{v.name} v{v.version}")
        rep.job_rows_linked = self.mapping.job_rows(rep.run_id)
        again = ""
        if previous:
            again = {"started": " (its previous import was interrupted: that task would be abandoned)",
                     "failed": " (its previous import failed: it would be retried)",
                     "partial": " (partial before: it would be imported again)"}.get(previous["status"], "")
        self.echo(
            f"would import {rep.label()} -> project {rep.project!r}, task {rep.task_name!r} ({rep.mlflow_status} -> "
            f"{_STATUS.get(rep.mlflow_status, ('failed',))[0]}): {rep.params} params, {rep.metrics} metrics / "
            f"{rep.metric_points:,} points, {rep.artifacts} artifact files ({_size(rep.bytes_moved)}), "
            f"{len(versions)} model versions, {rep.job_rows_linked} job rows to link{again}"
        )
        return rep

    def _skip(self, previous: dict[str, Any]) -> bool:
        return previous["status"] == "imported" or (previous["status"] == "partial" and not self.retry_partial)

    def _report(self, run: Any, experiment: str) -> RunReport:
        info = run.info
        return RunReport(run_id=info.run_id, experiment=experiment, name=info.run_name or "",
                         task_name=_clearml_name(info.run_name or info.run_id, "task"),
                         project=self.project_for(experiment), mlflow_status=info.status)

    def import_run(self, run: Any, experiment: str, history: dict[str, list[tuple[int, float]]],
                   versions: list[_Version], previous: dict[str, Any] | None) -> RunReport:
        rep = self._report(run, experiment)
        info = run.info
        if previous and self._skip(previous):
            rep.outcome = "skipped"
            rep.clearml_task_id = previous.get("clearml_task_id")
            return rep
        details: dict[str, Any] = dict(previous["details"]) if previous else {}
        if previous and previous.get("clearml_task_id"):
            key = {"started": "abandoned_task_ids"}.get(previous["status"], "previous_task_ids")
            details.setdefault(key, []).append(previous["clearml_task_id"])
            if previous["status"] == "started":
                self._abandon(previous["clearml_task_id"])
                rep.notes.append(f"previous import into task {previous['clearml_task_id']} was interrupted; "
                                 "that task is marked failed and the run imported again")
        details.update(run_name=info.run_name, project=rep.project, task_name=rep.task_name, mlflow_status=info.status)
        tags = [IMPORT_TAG] + [
            _truncate(f"{k}:{v}" if v else k, MAX_TAG_CHARS, "…")
            for k, v in sorted(run.data.tags.items()) if not k.startswith("mlflow.")
        ]
        tmp = Path(tempfile.mkdtemp(prefix="mlflow-import-"))
        try:
            with _quiet_stdout(), self.tracker.task(rep.task_name, "training", project=rep.project, tags=tags) as task:
                rep.clearml_task_id = task.id
                self.mapping.write(info.run_id, status="started", task_id=task.id, experiment=experiment, details=details)
                long_values: dict[str, dict[str, str]] = {}
                self._log_params_and_properties(task, run, experiment, rep, long_values)
                self._log_metrics(task, history, rep)
                registered = self._register_models(task, versions, rep, tmp)
                self._upload_artifacts(task, run, rep, tmp, skip_uris=registered)
                if long_values:
                    path = tmp / f"{LONG_VALUES_ARTIFACT}.json"
                    path.write_text(json.dumps(long_values, ensure_ascii=False, indent=1))
                    task.upload_artifact(LONG_VALUES_ARTIFACT, path, {"what": "full values of truncated params/tags"})
                    rep.bytes_moved += path.stat().st_size
                if rep.reasons:
                    task.add_tags(PARTIAL_TAG)
                    task.set_properties(mlflow_import_issues=_truncate("; ".join(rep.reasons), MAX_VALUE_CHARS, "…"))
                status, reason = _STATUS.get(info.status, ("failed", f"MLflow run status {info.status} "
                                                                     "(not finished when imported)"))
                if status == "failed":
                    task.finish_failed(reason)
        except TrackingError:
            raise  # ClearML itself is unusable: stop the whole import with the tracker's explanation
        except KeyboardInterrupt:
            if rep.clearml_task_id:
                details.update(reasons=rep.reasons + ["interrupted (Ctrl-C)"])
                self.mapping.write(info.run_id, status="failed", task_id=rep.clearml_task_id,
                                   experiment=experiment, details=details)
            raise
        except Exception as exc:  # noqa: BLE001 - this run fails, the import goes on
            from vision_pipeline.records.errors import RecordsError

            if isinstance(exc, RecordsError):
                raise
            rep.outcome = "failed"
            rep.reasons.append(f"import failed: {_reason(exc)}")
            log.debug("run %s failed", info.run_id, exc_info=True)
            details.update(reasons=rep.reasons)
            self.mapping.write(info.run_id, status="failed", task_id=rep.clearml_task_id,
                               experiment=experiment, details=details)
            return rep
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        rep.outcome = "partial" if rep.reasons else "imported"
        details.update(reasons=rep.reasons, metric_points=rep.metric_points, skipped_points=rep.skipped_points,
                       artifacts=rep.artifacts, bytes_moved=rep.bytes_moved, models=rep.models)
        rep.job_rows_linked = self.mapping.write(info.run_id, status=rep.outcome, task_id=rep.clearml_task_id,
                                                 experiment=experiment, details=details, link=True)
        return rep

    def _abandon(self, task_id: str) -> None:
        """Mark the task of an interrupted import failed, where that is possible."""
        reason = "abandoned: the MLflow import into this task was interrupted; the run was imported again"
        try:
            if self.tracker.offline:
                folder = self.tracker.offline_root() / task_id
                if folder.is_dir():  # an unclosed session: never zipped, so `clearml sync` ignores it
                    (folder / STATUS_FILE).write_text(json.dumps(
                        {"status": "failed", "status_reason": reason, "finished_at": time.time(), "models": []}))
            else:
                from clearml import Task

                Task.get_task(task_id=task_id).mark_failed(ignore_errors=True, status_reason=reason[:250],
                                                           status_message=reason)
        except Exception as exc:  # noqa: BLE001 - best effort; the mapping records it either way
            log.warning("could not mark abandoned task %s failed: %s", task_id, exc)

    # -- the parts of a run ----------------------------------------------------------------------
    def _check_values(self, run: Any, rep: RunReport, long_values: dict[str, dict[str, str]]) -> dict[str, str]:
        params = {}
        for key, value in sorted(run.data.params.items()):
            value = "" if value is None else str(value)
            if len(value) > MAX_VALUE_CHARS:
                long_values.setdefault("params", {})[key] = value
                rep.reasons.append(f"parameter {key!r} is {len(value):,} characters: truncated to {MAX_VALUE_CHARS:,} "
                                   f"in the hyperparameters, full value in artifact {LONG_VALUES_ARTIFACT}")
                value = _truncate(value, MAX_VALUE_CHARS)
            params[key] = value
        rep.params = len(params)
        for key, value in run.data.tags.items():
            if value and len(str(value)) > MAX_VALUE_CHARS or (not key.startswith("mlflow.") and len(f"{key}:{value}") > MAX_TAG_CHARS):
                long_values.setdefault("tags", {})[key] = str(value)
        return params

    def _log_params_and_properties(self, task: TrackedTask, run: Any, experiment: str, rep: RunReport,
                                   long_values: dict[str, dict[str, str]]) -> None:
        info = run.info
        params = self._check_values(run, rep, long_values)
        if params:
            task.connect(params, name=PARAM_SECTION)
        props: dict[str, Any] = {
            "mlflow_run_id": info.run_id,
            "mlflow_experiment": experiment,
            "mlflow_experiment_id": info.experiment_id,
            "mlflow_run_name": info.run_name or "",
            "mlflow_status": info.status,
            "mlflow_start_time": _iso(info.start_time),
            "mlflow_end_time": _iso(info.end_time),
            "mlflow_user": info.user_id or "",
            "mlflow_artifact_uri": info.artifact_uri or "",
            "mlflow_tracking_uri": self.source.safe_uri,
        }
        for key, value in sorted(run.data.tags.items()):
            if key.startswith("mlflow.") and key != "mlflow.runName":
                props[key] = _truncate(str(value), MAX_VALUE_CHARS)
        long_tags = [k for k in long_values.get("tags", {})]
        if long_tags:
            rep.notes.append(f"tag value(s) {', '.join(map(repr, long_tags))} truncated; full values in "
                             f"artifact {LONG_VALUES_ARTIFACT}")
        task.set_properties(**{k: _truncate(str(v), MAX_VALUE_CHARS) for k, v in props.items()})

    def _log_metrics(self, task: TrackedTask, history: dict[str, list[tuple[int, float]]], rep: RunReport) -> None:
        report = task.sdk_task.get_logger().report_scalar
        used: dict[tuple[str, str], str] = {}
        lo, hi = -_DBL_MAX, _DBL_MAX
        for key in sorted(history):
            points = history[key]
            title, series = metric_title_series(key)
            if (title, series) in used:
                rep.notes.append(f"metrics {used[(title, series)]!r} and {key!r} map to the same ClearML scalar; "
                                 f"{key!r} is logged as title {key!r}, series 'mlflow'")
                title, series = key, "mlflow"
            used[(title, series)] = key
            bad = 0
            for step, value in points:
                if lo < value < hi:  # False for NaN, +/-inf and MLflow's +/-DBL_MAX stand-ins for inf
                    report(title=title, series=series, value=value, iteration=step)
                else:
                    bad += 1
            rep.metrics += 1
            rep.metric_points += len(points) - bad
            rep.skipped_points += bad
            if bad:
                rep.reasons.append(f"metric {key!r}: {bad} of {len(points)} points are NaN/inf, which ClearML cannot "
                                   "store; skipped")

    def _upload_artifacts(self, task: TrackedTask, run: Any, rep: RunReport, tmp: Path, skip_uris: set[str]) -> None:
        info = run.info
        # MLflow 3 logged models live outside the run's folder; a registered one already travels as a model.
        logged, problems = self.source.logged_model_folders(run)
        rep.reasons.extend(problems)
        folders = [("", info.artifact_uri)] + [(f"logged_models/{name}/", uri) for name, uri in logged
                                              if uri and uri.rstrip("/") not in skip_uris]
        for prefix, uri in folders:
            files, problems = self.source.artifact_files(uri, info.run_id)
            rep.reasons.extend(problems)
            for rel, local, size in files:
                name = prefix + rel
                try:
                    if local is None:
                        local = self.source.download(info.run_id, rel, tmp / "artifacts" / str(rep.artifacts))
                        size = local.stat().st_size
                    task.upload_artifact(name, local, {"mlflow_path": rel, "mlflow_run_id": info.run_id})
                except Exception as exc:  # noqa: BLE001
                    rep.reasons.append(f"artifact {name!r} was not uploaded ({_reason(exc)})")
                    continue
                rep.artifacts += 1
                rep.bytes_moved += size or 0

    def _register_models(self, task: TrackedTask, versions: list[_Version], rep: RunReport, tmp: Path) -> set[str]:
        """Register every version; returns their source locations."""
        locations: set[str] = set()
        for v in versions:
            label = f"registered model {v.name!r} version {v.version}"
            try:
                location = self.source.model_location(v)
                locations.add(location.rstrip("/"))
                local = _local_path(location)
                if local is None:
                    local = Path(self.source_download_uri(location, tmp / "models" / f"{v.name}-{v.version}"))
                if not local.exists():
                    rep.reasons.append(f"{label}: its files are missing on disk ({local}); model not registered")
                    continue
                weights, framework = _model_file(local, v, tmp / "staged")
                tags = [f"version:{v.version}", f"stage:{v.stage}", *(f"alias:{a}" for a in v.aliases),
                        IMPORT_TAG, *(_truncate(f"{k}:{val}", MAX_TAG_CHARS, "…") for k, val in sorted(v.tags.items()))]
                metadata = {"mlflow_model_name": v.name, "mlflow_version": v.version, "mlflow_stage": v.stage,
                            "mlflow_aliases": ",".join(v.aliases), "mlflow_source": v.source,
                            "mlflow_run_id": v.run_id, "mlflow_created": _iso(v.created),
                            "mlflow_description": _truncate(v.description, MAX_VALUE_CHARS, "…")}
                task.register_model(weights, name=v.name, tags=tags, framework=framework, metadata=metadata)
                rep.bytes_moved += weights.stat().st_size
                rep.models.append(f"{v.name} v{v.version}")
            except Exception as exc:  # noqa: BLE001
                rep.reasons.append(f"{label} was not registered ({_reason(exc)})")
        return locations

    def source_download_uri(self, uri: str, dst: Path) -> str:
        import mlflow.artifacts

        dst.mkdir(parents=True, exist_ok=True)
        return mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst), tracking_uri=self.source.uri)


def _model_file(path: Path, version: _Version, staging: Path) -> tuple[Path, str]:
    """The file to register: a model folder becomes ``<name>-v<N>.zip`` (uncompressed, structure kept);
    a single file is staged as ``<name>-v<N>-<file>`` so versions never collide in the session."""
    staging.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in version.name)
    framework = "Custom"
    if path.is_dir():
        mlmodel = path / "MLmodel"
        if mlmodel.is_file():
            try:
                import yaml

                flavors = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors") or {}
                framework = next((_FLAVOR_FRAMEWORK[f] for f in flavors if f in _FLAVOR_FRAMEWORK), framework)
            except Exception:  # noqa: BLE001 - the framework is a label, not data
                pass
        target = staging / f"{safe}-v{version.version}.zip"
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for file in sorted(path.rglob("*")):
                if file.is_file():
                    zf.write(file, file.relative_to(path).as_posix())
        return target, framework
    target = staging / f"{safe}-v{version.version}-{path.name}"
    try:
        os.link(path, target)
    except OSError:
        shutil.copyfile(path, target)
    return target, framework


# ---------------------------------------------------------------------------------------- entry point
def import_runs(
    tracking_uri: str,
    *,
    store: Any | None = None,
    tracker: ClearMLTracker | None = None,
    experiments: Sequence[str] = (),
    run_ids: Sequence[str] = (),
    project_map: Mapping[str, str] | None = None,
    dry_run: bool = False,
    retry_partial: bool = False,
    registry_uri: str | None = None,
    progress: bool = False,
    echo: Callable[[str], None] | None = None,
) -> ImportSummary:
    """Import MLflow runs into ClearML tasks; see the module docstring for the mapping and guarantees.

    ``store`` is the job-record ``JobStore`` (mapping table and job rows; schema upgraded to head when
    not a dry run); ``tracker`` the ``ClearMLTracker`` the tasks are created with. No ``experiments``
    and no ``run_ids`` means every active experiment. ``dry_run`` reads everything, writes nothing
    (no ClearML task, no row) and reports what would happen through ``echo``.
    Raises ``MLflowImportError`` when MLflow cannot be read at all, ``TrackingError`` when ClearML
    cannot create tasks, ``RecordsError`` when the job-record database fails.
    """
    started = time.perf_counter()
    echo = echo or (lambda line: None)
    summary = ImportSummary(tracking_uri=redact_uri(tracking_uri), dry_run=dry_run)
    if not dry_run and (store is None or tracker is None):
        raise ValueError("import_runs needs a job-record store and a ClearML tracker unless dry_run=True")
    source = _MLflowSource(tracking_uri, registry_uri)

    readable_store = store
    if store is not None:
        if dry_run:
            readable_store = _readable_or_none(store, summary)
        else:
            store.ensure_schema()
    mapping = _Mapping(readable_store, tracking_uri)

    # -- which runs --------------------------------------------------------------------------------
    exp_names: dict[str, str] = {}
    runs: list[Any] = []
    exps, problems = source.experiments(experiments) if (experiments or not run_ids) else ([], [])
    summary.problems.extend(problems)
    for exp in exps:
        exp_names[exp.experiment_id] = exp.name
    runs.extend(source.runs([e.experiment_id for e in exps]))
    seen = {r.info.run_id for r in runs}
    for rid in run_ids:
        if rid in seen:
            continue
        try:
            run = source.run(rid)
        except Exception as exc:  # noqa: BLE001
            summary.runs.append(RunReport(run_id=rid, outcome="failed",
                                          reasons=[f"not found in {summary.tracking_uri} ({_reason(exc)})"]))
            continue
        seen.add(rid)
        runs.append(run)
    unknown_projects = set(project_map or {}) - {source.experiment_name(r.info.experiment_id, exp_names) for r in runs}
    if unknown_projects:
        summary.notes.append("--project-map names experiments with no runs in this import: "
                             + ", ".join(map(repr, sorted(unknown_projects))))

    versions, registry_problems, registry_notes = source.model_versions() if runs else ({}, [], [])
    summary.problems.extend(registry_problems)
    summary.notes.extend(registry_notes)
    previous = mapping.rows()
    importer = _Importer(source, tracker, mapping, project_map or {}, summary, echo, retry_partial)

    # Runs already imported are not read again; the rest are read in chunks, the next chunk while
    # this one is logged.
    todo = [r for r in runs if not (r.info.run_id in previous and importer._skip(previous[r.info.run_id]))]
    todo_ids = {r.info.run_id for r in todo}
    chunks = [todo[i:i + RUNS_PER_READ] for i in range(0, len(todo), RUNS_PER_READ)]
    bar = _progress(len(runs), progress)
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-read") as pool:
            pending: Future | None = pool.submit(_read_chunk, source, chunks[0]) if chunks else None
            chunk_index = 0
            histories: dict[str, dict[str, list[tuple[int, float]]]] = {}
            for run in runs:
                rid = run.info.run_id
                exp = source.experiment_name(run.info.experiment_id, exp_names)
                if rid in todo_ids and rid not in histories:
                    histories = pending.result() if pending is not None else {}
                    chunk_index += 1
                    pending = pool.submit(_read_chunk, source, chunks[chunk_index]) if chunk_index < len(chunks) else None
                history = histories.pop(rid, {}) if rid in todo_ids else {}
                if isinstance(history, Exception):
                    rep = importer._report(run, exp)
                    rep.outcome, rep.reasons = "failed", [f"metric histories could not be read ({_reason(history)})"]
                elif dry_run:
                    rep = importer.dry_run(run, exp, history, versions.get(rid, []), previous.get(rid))
                else:
                    rep = importer.import_run(run, exp, history, versions.get(rid, []), previous.get(rid))
                summary.runs.append(rep)
                if rep.outcome in ("failed", "partial") and not dry_run:
                    bar.write(f"{rep.outcome}: {rep.label()}: {'; '.join(rep.reasons)}", file=sys.stderr)
                bar.update(1)
                bar.set_postfix(points=f"{summary.metric_points:,}", failed=summary.failed, refresh=False)
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - started
    for rep in summary.runs:
        summary.notes.extend(f"{rep.label()}: {n}" for n in rep.notes)
    summary.notes.extend(mapping.overwritten)
    return summary


def _read_chunk(source: _MLflowSource, runs: list[Any]) -> dict[str, Any]:
    try:
        return source.metric_histories(runs)
    except Exception:  # noqa: BLE001 - one run at a time, so only the unreadable ones fail
        out: dict[str, Any] = {}
        for run in runs:
            try:
                out.update(source.metric_histories([run]))
            except Exception as exc:  # noqa: BLE001
                out[run.info.run_id] = exc
        return out


def _readable_or_none(store: Any, summary: ImportSummary) -> Any | None:
    """Dry run: read the mapping only where that changes nothing (no new SQLite file, no migration)."""
    from sqlalchemy.engine import make_url

    from vision_pipeline.records import migrate

    url = make_url(store.url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).is_file():
        summary.notes.append("the job-record database does not exist yet; the import would create it")
        return None
    rev = store.current_revision()
    if rev != migrate.head():
        summary.notes.append(f"the job-record database is at revision {rev or 'none'}; the import would upgrade it "
                             f"to {migrate.head()}")
        return None
    return store


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, **kwargs: Any) -> None: ...
    def close(self) -> None: ...

    @staticmethod
    def write(line: str, file: Any = None) -> None:
        log.info("%s", line)


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="run", desc="mlflow-import", file=sys.stderr, dynamic_ncols=True)


# --------------------------------------------------------------------------------------- benchmark
def benchmark_import(n_runs: int, n_metrics: int, n_steps: int, workdir: Path | str, *,
                     mlflow_db_template: Path | str | None = None) -> dict[str, Any]:
    """Time importing ``n_runs`` x ``n_metrics`` x ``n_steps`` against MLflow reading the same runs back twice.

    The MLflow data is written once into ``workdir/mlflow-<R>x<M>x<S>.db`` (through ``MlflowClient.log_batch``)
    and reused by later calls; ``mlflow_db_template`` is an empty MLflow database to copy instead of
    letting MLflow create one (its schema migrations take seconds). The read baseline is what MLflow's
    client does: ``search_runs`` then ``get_metric_history`` for every run and metric, twice. The import
    goes into a fresh offline ClearML session folder and a fresh SQLite job-record database.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from vision_pipeline.records.store import JobStore
    from vision_pipeline.tracking.clearml_session import ClearMLConfig

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / f"mlflow-{n_runs}x{n_metrics}x{n_steps}.db"
    ready = workdir / f"{db.name}.complete"
    uri = f"sqlite:///{db}"
    created_s = 0.0
    if not ready.exists():
        db.unlink(missing_ok=True)
        if mlflow_db_template:
            shutil.copyfile(mlflow_db_template, db)
        t0 = time.perf_counter()
        client = MlflowClient(tracking_uri=uri)
        exp_id = client.create_experiment("benchmark", artifact_location=(workdir / "artifacts").as_uri())
        for r in range(n_runs):
            run = client.create_run(exp_id, run_name=f"bench-{r:04d}", tags={"bench": "1"})
            rid = run.info.run_id
            batch: list[Any] = []
            for m in range(n_metrics):
                key = f"train_metric{m}" if m % 2 == 0 else f"val_metric{m}"
                for s in range(n_steps):
                    batch.append(Metric(key, 1.0 / (s + 1) + m + r * 1e-3, 1_700_000_000_000 + s, s))
                    if len(batch) == 1000:  # MLflow's limit per log_batch
                        client.log_batch(rid, metrics=batch)
                        batch = []
            if batch:
                client.log_batch(rid, metrics=batch)
            client.set_terminated(rid, "FINISHED")
        created_s = time.perf_counter() - t0
        ready.write_text(json.dumps({"created_s": created_s}))

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("benchmark")

    def read_back() -> int:
        n = 0
        for run in client.search_runs([exp.experiment_id], max_results=50_000):
            for key in run.data.metrics:
                n += len(client.get_metric_history(run.info.run_id, key))
        return n

    t0, c0 = time.perf_counter(), time.process_time()
    points = read_back()
    points_again = read_back()
    read_twice_s, read_twice_cpu_s = time.perf_counter() - t0, time.process_time() - c0

    stamp = f"{time.time_ns()}"
    job_db = workdir / f"jobs-{stamp}.sqlite"
    clearml_dir = workdir / f"clearml-{stamp}"
    store = JobStore(f"sqlite:///{job_db}")
    tracker = ClearMLTracker(ClearMLConfig(cache_dir=clearml_dir))
    try:
        store.ensure_schema()
        t0, c0 = time.perf_counter(), time.process_time()
        summary = import_runs(uri, store=store, tracker=tracker, experiments=["benchmark"])
        import_s, import_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    finally:
        store.dispose()
    t0 = time.perf_counter()
    source = _MLflowSource(uri)
    fast_points = sum(len(p) for h in source.metric_histories(source.runs([exp.experiment_id])).values()
                      for p in h.values())
    bulk_read_s = time.perf_counter() - t0
    result = {
        "runs": n_runs, "metrics": n_metrics, "steps": n_steps, "points": points,
        "mlflow_read_twice_s": round(read_twice_s, 3),
        "import_s": round(import_s, 3),
        "import_vs_read_twice": round(import_s / read_twice_s, 3) if read_twice_s else None,
        "passed": import_s < read_twice_s,
        # CPU seconds of this process (all threads): steadier than wall time on a shared machine
        "mlflow_read_twice_cpu_s": round(read_twice_cpu_s, 3),
        "import_cpu_s": round(import_cpu_s, 3),
        "imported": summary.imported, "failed": summary.failed, "imported_points": summary.metric_points,
        "bulk_read_s": round(bulk_read_s, 3),
        "points_per_s": round(summary.metric_points / import_s) if import_s else None,
        "created_s": round(created_s, 3) if created_s else None,
    }
    if points != points_again or fast_points != points or summary.metric_points != points:
        result["passed"] = False
        result["error"] = f"point counts differ: read {points}/{points_again}, bulk {fast_points}, imported {summary.metric_points}"
    shutil.rmtree(clearml_dir, ignore_errors=True)
    job_db.unlink(missing_ok=True)
    return result
