"""MLflow run -> ClearML task mapping (makes `mlflow-import` idempotent and resumable).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mlflow_imports",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("mlflow_run_id", sa.String(255), nullable=False, unique=True),
        sa.Column("clearml_task_id", sa.String(255)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tracking_uri", sa.Text),
        sa.Column("experiment_name", sa.String(255)),
        sa.Column("details", sa.JSON),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_mlflow_imports_clearml_task_id", "mlflow_imports", ["clearml_task_id"])


def downgrade() -> None:
    op.drop_table("mlflow_imports")
