"""A job row and a ClearML task around one piece of work — the unit every asset and command uses.

Plain Python: the Dagster assets call :func:`tracked_job`; so could a CLI or a notebook.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from vision_pipeline.records.errors import RecordsError
from vision_pipeline.records.store import JobStore
from vision_pipeline.tracking import ClearMLTracker, TrackedTask
from vision_pipeline.tracking.clearml_session import describe_exception

log = logging.getLogger(__name__)

TASK_NAMES = {
    "dataset": "Dataset Job {id} - {label}",
    "training": "Training Job {id} - {label}",
    "export": "Export Job {id} - {label}",
    "inference": "Inference Job {id} - {label}",
}
TASK_TYPES = {"dataset": "data_processing", "training": "training", "export": "custom", "inference": "inference"}


@dataclass
class JobHandle:
    kind: str
    id: int
    task: TrackedTask
    store: JobStore
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def task_id(self) -> str:
        return self.task.id

    @property
    def task_url(self) -> str:
        return self.task.url


@contextmanager
def tracked_job(
    store: JobStore,
    tracker: ClearMLTracker,
    kind: str,
    *,
    label: str,
    config: dict[str, Any] | None = None,
    dagster_run_id: str | None = None,
    tags: list[str] | None = None,
    **fields: Any,
) -> Iterator[JobHandle]:
    """Row pending -> ClearML task created -> row running -> work -> row completed -> task completed.

    Any exception marks the task failed with the reason (``ClearMLTracker.task``) and the row failed
    with the error, then propagates. The row is completed inside the task's block, so a database
    failure at the end still fails the task instead of leaving it "completed" beside a running row.
    """
    job_id = store.create_job(
        kind, config=config, dagster_run_id=dagster_run_id, project_id=tracker.config.project_id, **fields
    )
    name = TASK_NAMES[kind].format(id=job_id, label=label)
    try:
        with tracker.task(name, TASK_TYPES[kind], tags=tags) as task:
            store.start_job(kind, job_id, clearml_task_id=task.id)
            handle = JobHandle(kind=kind, id=job_id, task=task, store=store)
            task.set_properties(job_kind=kind, job_id=job_id, dagster_run_id=dagster_run_id or "")
            yield handle
            store.complete_job(kind, job_id, handle.result)
    except BaseException as exc:
        try:
            store.fail_job(kind, job_id, describe_exception(exc))
        except RecordsError as db_exc:  # the database itself is down: say so, keep the original error
            log.error("could not mark %s job %s failed: %s", kind, job_id, db_exc)
        raise
