"""The ClearML task lifecycle the old platform's ClearMLService had, offline and online.

``ClearMLTracker.task(...)`` is a context manager: the task is created, used, then closed as
*completed* on success or *failed* with the reason on any exception (which is re-raised). In offline
mode everything (scalars, artifacts, models, final status) lands in a session folder under the
project home that ``vision-pipeline clearml sync`` later imports into a server.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

log = logging.getLogger(__name__)

# ClearML auto-logging we do not want: we log explicitly, and repository detection can block
# Task.close() for up to five minutes when git metadata is odd.
_NO_AUTO_CONNECT = {
    key: False
    for key in (
        "matplotlib", "tensorflow", "tensorboard", "pytorch", "xgboost", "scikit", "fastai",
        "lightgbm", "hydra", "detect_repository", "tfdefines", "joblib", "megengine", "catboost", "gradio",
    )
}
STATUS_FILE = "vision_pipeline_status.json"
TASK_TYPES = ("training", "testing", "inference", "data_processing", "application", "monitor",
              "controller", "optimizer", "service", "qc", "custom")


class TrackingError(RuntimeError):
    """A ClearML configuration or connection problem: what is wrong and how to fix it."""


def metric_title_series(name: str) -> tuple[str, str]:
    """The project's convention: ``train_loss`` -> (title ``loss``, series ``train``).

    The part before the first underscore is the series, the rest the title; a name without an
    underscore goes to series ``metrics``.
    """
    if "_" in name:
        series, title = name.split("_", 1)
        return title, series
    return name, "metrics"


@dataclass(frozen=True)
class ClearMLConfig:
    """What the SDK needs, taken from ClearML's own variable names (see docs/configuration.md)."""

    api_host: str | None = None
    web_host: str | None = None
    files_host: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    offline_mode: bool = False
    cache_dir: Path | None = None
    project_id: int = 1

    @property
    def offline(self) -> bool:
        return self.offline_mode or not self.api_host

    def validate(self) -> None:
        if self.offline:
            return
        missing = [n for n, v in (("CLEARML_API_ACCESS_KEY", self.access_key),
                                  ("CLEARML_API_SECRET_KEY", self.secret_key)) if not v]
        if missing:
            raise TrackingError(
                f"CLEARML_API_HOST is set ({self.api_host}) but {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not: create credentials in the ClearML web UI "
                "(Settings > Workspace) and export them, or set CLEARML_OFFLINE_MODE=1 to record offline"
            )
        if not self.api_host.startswith(("http://", "https://")):
            raise TrackingError(f"CLEARML_API_HOST must be an http(s) URL, got {self.api_host!r}")

    def describe(self) -> str:
        return "offline" if self.offline else f"online ({self.api_host})"


def _sdk():
    from clearml import Task
    from clearml.backend_interface.task.task import Task as BackendTask

    # The SDK reports from a forked subprocess by default on Linux, and Task.close() then waits
    # up to ~10 s for it. Thread mode writes the same events and closes in milliseconds.
    BackendTask._report_subprocess_enabled = False
    return Task


class ClearMLTracker:
    """Creates tracked tasks. One instance per configuration; cheap to build."""

    def __init__(self, config: ClearMLConfig) -> None:
        config.validate()
        self.config = config

    @property
    def offline(self) -> bool:
        return self.config.offline

    def offline_root(self) -> Path:
        return self._cache_dir() / "offline"

    def _cache_dir(self) -> Path:
        if self.config.cache_dir is not None:
            return Path(self.config.cache_dir)
        from vision_pipeline import settings

        return settings.clearml_dir()

    def _prepare_sdk(self):
        # The SDK reads its cache folder and credentials from the environment when a task starts;
        # set them here, at call time, from this tracker's configuration.
        os.environ["CLEARML_CACHE_DIR"] = str(self._cache_dir())
        Task = _sdk()
        if self.offline:
            Task.set_offline(True)
        else:
            Task.set_offline(False)
            Task.set_credentials(
                api_host=self.config.api_host,
                web_host=self.config.web_host,
                files_host=self.config.files_host,
                key=self.config.access_key,
                secret=self.config.secret_key,
            )
        return Task

    def project_name(self, project_id: int | None = None) -> str:
        return f"Project {self.config.project_id if project_id is None else project_id}"

    @contextmanager
    def task(
        self,
        name: str,
        task_type: str = "training",
        *,
        project: str | None = None,
        tags: list[str] | None = None,
    ) -> Iterator["TrackedTask"]:
        """A task that is completed when the block succeeds and failed (with the reason) when it raises."""
        if task_type not in TASK_TYPES:
            raise TrackingError(f"unknown ClearML task type {task_type!r}; expected one of {TASK_TYPES}")
        Task = self._prepare_sdk()
        _forget_inherited_master_task()
        current = Task.current_task()
        if current is not None:
            # A previous task in this process was not closed (e.g. the process was interrupted
            # mid-run): close it so Task.init creates a new one instead of returning it.
            current.close()
        try:
            sdk_task = Task.init(
                project_name=project or self.project_name(),
                task_name=name,
                task_type=getattr(Task.TaskTypes, task_type),
                tags=tags,
                reuse_last_task_id=False,
                continue_last_task=False,
                auto_connect_frameworks=_NO_AUTO_CONNECT,
                auto_connect_arg_parser=False,
                auto_resource_monitoring=False,
                auto_connect_streams=False,
            )
        except Exception as exc:  # the SDK raises many types for auth/connection problems
            raise TrackingError(self._explain(exc)) from exc
        tracked = TrackedTask(sdk_task, self)
        try:
            yield tracked
        except BaseException as exc:
            tracked.finish_failed(describe_exception(exc)[:4000])
            raise
        else:
            tracked.finish_completed()

    def _explain(self, exc: Exception) -> str:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if self.offline:
            return f"ClearML offline session could not be created in {self.offline_root()}: {text}"
        low = text.lower()
        if "unauthorized" in low or "invalid" in low and "key" in low or "401" in low:
            return (f"ClearML server {self.config.api_host} rejected the credentials: check "
                    f"CLEARML_API_ACCESS_KEY / CLEARML_API_SECRET_KEY ({text})")
        return (f"ClearML server {self.config.api_host} is unreachable or refused the request: {text}. "
                "Check CLEARML_API_HOST, or set CLEARML_OFFLINE_MODE=1 to record offline and sync later")


_MASTER_ENV = ("CLEARML_PROC_MASTER_ID", "TRAINS_PROC_MASTER_ID")


def _forget_inherited_master_task() -> None:
    """Drop a ClearML "master process" marker inherited from a parent process.

    ``Task.init`` records ``<pid>:<task id>`` in ``CLEARML_PROC_MASTER_ID``; a child process that inherits
    it believes it is a sub-process of that (long closed) task and gets a do-nothing stub instead of a
    task of its own. Every materialisation owns its task, so a marker naming another process is stale.
    """
    for name in _MASTER_ENV:
        value = os.environ.get(name)
        if value and value.split(":", 1)[0] != str(os.getpid()):
            del os.environ[name]


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` — the failure reason recorded on ClearML tasks and job rows alike."""
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def _clean(value: Any) -> Any:
    """JSON-safe values for ClearML parameters and artifact metadata."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


@dataclass
class TrackedTask:
    """One ClearML task. Created by ``ClearMLTracker.task``; never finished twice."""

    sdk_task: Any
    tracker: ClearMLTracker
    finished: str | None = None
    models: list[str] = field(default_factory=list)

    # -- identity ---------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.sdk_task.id

    @property
    def offline(self) -> bool:
        return self.tracker.offline

    @property
    def session_folder(self) -> Path | None:
        folder = self.sdk_task.get_offline_mode_folder() if self.offline else None
        return Path(folder) if folder else None

    @property
    def url(self) -> str:
        """The task's web page online; the offline session folder (``file://``) offline."""
        if self.offline:
            return self.session_folder.as_uri()
        return self.sdk_task.get_output_log_web_page()

    # -- logging ----------------------------------------------------------------------------
    def connect(self, params: Mapping[str, Any], name: str = "General") -> None:
        """Hyperparameters, shown under CONFIGURATION > HYPERPARAMETERS > ``name``."""
        self.sdk_task.connect(_clean(dict(params)), name=name)

    def set_properties(self, **props: Any) -> None:
        self.sdk_task.set_user_properties(**{k: str(v) for k, v in props.items()})

    def add_tags(self, *tags: str) -> None:
        self.sdk_task.add_tags(list(tags))

    def log_metrics(self, metrics: Mapping[str, float], iteration: int) -> int:
        """One dict per iteration; ``train_loss`` -> title ``loss``, series ``train``. Non-finite values are skipped."""
        logger = self.sdk_task.get_logger()
        sent = 0
        for name, value in metrics.items():
            if value is None:
                continue
            value = float(value)
            if not math.isfinite(value):
                log.warning("metric %s=%s at iteration %s is not finite; not reported", name, value, iteration)
                continue
            title, series = metric_title_series(name)
            logger.report_scalar(title=title, series=series, value=value, iteration=iteration)
            sent += 1
        return sent

    def log_scalar(self, title: str, series: str, value: float, iteration: int) -> None:
        self.sdk_task.get_logger().report_scalar(title=title, series=series, value=float(value), iteration=iteration)

    def log_text(self, line: str) -> None:
        self.sdk_task.get_logger().report_text(line, print_console=False)

    def log_image(self, title: str, series: str, path: Path, iteration: int = 0) -> None:
        self.sdk_task.get_logger().report_image(title=title, series=series, local_path=str(path), iteration=iteration)

    def log_table(self, title: str, series: str, rows: list[list[Any]], iteration: int = 0) -> None:
        self.sdk_task.get_logger().report_table(title=title, series=series, iteration=iteration, table_plot=rows)

    # -- artifacts and models ---------------------------------------------------------------
    def upload_artifact(self, name: str, path_or_uri: str | Path, metadata: Mapping[str, Any] | None = None) -> None:
        """A file is uploaded (offline: copied into the session); an ``s3://`` URI is registered as a link."""
        obj = str(path_or_uri)
        if "://" not in obj and not Path(obj).exists():
            raise FileNotFoundError(f"artifact {name!r}: file {obj} does not exist")
        ok = self.sdk_task.upload_artifact(
            name=name, artifact_object=obj, metadata=_clean(dict(metadata or {})), wait_on_upload=True
        )
        if ok is False:
            raise TrackingError(f"ClearML did not accept artifact {name!r} ({obj})")

    def register_model(
        self,
        weights: str | Path,
        *,
        name: str,
        tags: list[str] | None = None,
        framework: str = "PyTorch",
        metadata: Mapping[str, Any] | None = None,
        labels: Mapping[str, int] | None = None,
    ) -> str:
        """Register an output model of this task; ``weights`` is a local file or an ``s3://`` URI. Returns the model id."""
        meta = {str(k): str(v) for k, v in (metadata or {}).items()}
        model = _OutputModel(task=self.sdk_task, name=name, tags=list(tags or []), framework=framework,
                             label_enumeration=dict(labels) if labels else None,
                             config_dict={"metadata": meta} if meta else None)
        if not self.offline:
            # Offline sessions cannot carry model metadata (the SDK has no offline path for it);
            # there it travels in the model configuration above, which the import keeps.
            for key, value in meta.items():
                model.set_metadata(key, value)
        weights = str(weights)
        if "://" in weights:
            model.update_weights(register_uri=weights, auto_delete_file=False)
        else:
            if not Path(weights).is_file():
                raise FileNotFoundError(f"model {name!r}: weights file {weights} does not exist")
            model.update_weights(weights_filename=weights, auto_delete_file=False)
        self.models.append(model.id)
        return model.id

    # -- finishing ----------------------------------------------------------------------------
    def finish_completed(self) -> None:
        self._finish("completed", None)

    def finish_failed(self, reason: str) -> None:
        self._finish("failed", reason)

    def _finish(self, status: str, reason: str | None) -> None:
        if self.finished:
            return
        self.finished = status
        try:
            if self.offline:
                # Offline sessions do not record status changes (the SDK marks every imported
                # session completed), so the outcome is written beside the session for `sync`.
                folder = self.session_folder
                folder.mkdir(parents=True, exist_ok=True)
                (folder / STATUS_FILE).write_text(json.dumps(
                    {"status": status, "status_reason": reason, "finished_at": time.time(), "models": self.models}
                ))
            elif status == "completed":
                self.sdk_task.mark_completed(ignore_errors=False)
            else:
                self.sdk_task.mark_failed(ignore_errors=False, status_reason=(reason or "failed")[:250],
                                          status_message=reason)
        finally:
            self.sdk_task.close()
            for name in _MASTER_ENV:  # closed: nothing for a child process to attach to
                os.environ.pop(name, None)


class _OutputModel:
    """``clearml.OutputModel`` that can register weights in offline mode.

    clearml 2.1.12: ``update_weights`` checks ``self.published`` before it branches to the offline
    path, and ``published`` reads ``locked`` from the offline placeholder model, which has none
    (``'DummyModel' object has no attribute 'locked'``). A model recorded in an offline session
    cannot be published, so the subclass answers False there and defers to ClearML otherwise. The
    weights are then copied into the session and registered on import, as the SDK intends.
    """

    _cls = None

    def __new__(cls, **kwargs):
        if cls._cls is None:
            from clearml import OutputModel

            class OfflineSafeOutputModel(OutputModel):
                @property
                def published(self) -> bool:  # type: ignore[override]
                    task = getattr(self, "_task", None)
                    if task is not None and task.is_offline():
                        return False
                    return super().published

            cls._cls = OfflineSafeOutputModel
        return cls._cls(**kwargs)
