"""Job tables as the old platform had them (training runs tracked in MLflow).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _job_columns() -> list[sa.Column]:
    return [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer, nullable=False, server_default="1"),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("dagster_run_id", sa.String(64)),
        sa.Column("config", sa.JSON),
        sa.Column("result", sa.JSON),
        sa.Column("error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    ]


def _indexes(table: str) -> None:
    op.create_index(f"ix_{table}_status", table, ["status"])
    op.create_index(f"ix_{table}_dagster_run_id", table, ["dagster_run_id"])


def upgrade() -> None:
    op.create_table("dataset_jobs", *_job_columns(), sa.Column("content_hash", sa.String(64)))
    _indexes("dataset_jobs")
    op.create_index("ix_dataset_jobs_content_hash", "dataset_jobs", ["content_hash"])

    op.create_table(
        "training_jobs",
        *_job_columns(),
        sa.Column("model_name", sa.String(255)),
        sa.Column("dataset_hash", sa.String(64)),
        # Deprecated since the ClearML migration; kept so imported MLflow history can be linked.
        sa.Column("mlflow_run_id", sa.String(255), comment="deprecated: MLflow run of the old platform"),
    )
    _indexes("training_jobs")
    op.create_index("ix_training_jobs_dataset_hash", "training_jobs", ["dataset_hash"])
    op.create_index("ix_training_jobs_mlflow_run_id", "training_jobs", ["mlflow_run_id"])

    op.create_table(
        "export_jobs",
        *_job_columns(),
        sa.Column("training_job_id", sa.Integer, sa.ForeignKey("training_jobs.id")),
        sa.Column("formats", sa.String(255)),
    )
    _indexes("export_jobs")
    op.create_index("ix_export_jobs_training_job_id", "export_jobs", ["training_job_id"])

    op.create_table(
        "inference_jobs",
        *_job_columns(),
        sa.Column("export_job_id", sa.Integer, sa.ForeignKey("export_jobs.id")),
    )
    _indexes("inference_jobs")
    op.create_index("ix_inference_jobs_export_job_id", "inference_jobs", ["export_job_id"])


def downgrade() -> None:
    # Destructive: below this revision there are no job tables at all.
    for table in ("inference_jobs", "export_jobs", "training_jobs", "dataset_jobs"):
        op.drop_table(table)
