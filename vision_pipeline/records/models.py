"""SQLAlchemy 2.0 models of the job records.

The schema is owned by the Alembic migrations in ``records/migrations``; these classes mirror the
head revision. A test compares them with the migrated schema so the two cannot drift.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JOB_STATUSES = ("pending", "running", "completed", "failed")


class Base(DeclarativeBase):
    pass


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class _JobColumns:
    """Columns every job table has."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(Integer, default=1, nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="pending", nullable=False, index=True)
    clearml_task_id: Mapped[str | None] = mapped_column(String(255), index=True)
    dagster_run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    config: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now, nullable=False)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=_now, onupdate=_now, nullable=False
    )


class DatasetJob(_JobColumns, Base):
    __tablename__ = "dataset_jobs"
    content_hash: Mapped[str | None] = mapped_column(String(64), index=True)


class TrainingJob(_JobColumns, Base):
    __tablename__ = "training_jobs"
    model_name: Mapped[str | None] = mapped_column(String(255))
    dataset_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    # Deprecated: the MLflow run this job logged to on the old platform. Kept (and indexed) so that
    # `vision-pipeline mlflow-import` can link imported history; new jobs never set it.
    mlflow_run_id: Mapped[str | None] = mapped_column(String(255), index=True)


class ExportJob(_JobColumns, Base):
    __tablename__ = "export_jobs"
    training_job_id: Mapped[int | None] = mapped_column(ForeignKey("training_jobs.id"), index=True)
    formats: Mapped[str | None] = mapped_column(String(255))


class InferenceJob(_JobColumns, Base):
    __tablename__ = "inference_jobs"
    export_job_id: Mapped[int | None] = mapped_column(ForeignKey("export_jobs.id"), index=True)


JOB_TABLES: dict[str, type[_JobColumns]] = {
    "dataset": DatasetJob,
    "training": TrainingJob,
    "export": ExportJob,
    "inference": InferenceJob,
}


class ModelPromotion(Base):
    """One promotion decision per training job: promoted to production, or rejected with a reason."""

    __tablename__ = "model_promotions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    training_job_id: Mapped[int] = mapped_column(ForeignKey("training_jobs.id"), unique=True, nullable=False)
    decision: Mapped[str] = mapped_column(String(16), nullable=False)  # promoted | rejected
    reason: Mapped[str | None] = mapped_column(Text)
    is_current: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False, index=True)
    clearml_task_id: Mapped[str | None] = mapped_column(String(255), index=True)
    clearml_model_id: Mapped[str | None] = mapped_column(String(255))
    dataset_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    map50: Mapped[float | None] = mapped_column(Float)
    baseline_map50: Mapped[float | None] = mapped_column(Float)
    replaces_training_job_id: Mapped[int | None] = mapped_column(Integer)
    dagster_run_id: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now, nullable=False)
    retired_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ClearMLSyncedSession(Base):
    """An offline ClearML session imported into a server by `vision-pipeline clearml sync`."""

    __tablename__ = "clearml_synced_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    offline_task_id: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    server_task_id: Mapped[str] = mapped_column(String(255), index=True, nullable=False)
    session_path: Mapped[str] = mapped_column(Text, nullable=False)
    api_host: Mapped[str | None] = mapped_column(String(255))
    rows_remapped: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    imported_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now, nullable=False)


class MLflowImport(Base):
    """MLflow run id -> ClearML task id: what `vision-pipeline mlflow-import` already carried over."""

    __tablename__ = "mlflow_imports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    mlflow_run_id: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    clearml_task_id: Mapped[str | None] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # started | imported | partial | failed
    tracking_uri: Mapped[str | None] = mapped_column(Text)
    experiment_name: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    imported_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now, nullable=False)
