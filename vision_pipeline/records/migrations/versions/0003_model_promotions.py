"""Model promotions: which training job's model is production, since when, replacing which.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_promotions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("training_job_id", sa.Integer, sa.ForeignKey("training_jobs.id"), nullable=False, unique=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("is_current", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("clearml_task_id", sa.String(255)),
        sa.Column("clearml_model_id", sa.String(255)),
        sa.Column("dataset_hash", sa.String(64)),
        sa.Column("map50", sa.Float),
        sa.Column("baseline_map50", sa.Float),
        sa.Column("replaces_training_job_id", sa.Integer),
        sa.Column("dagster_run_id", sa.String(64)),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("retired_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_model_promotions_is_current", "model_promotions", ["is_current"])
    op.create_index("ix_model_promotions_clearml_task_id", "model_promotions", ["clearml_task_id"])
    op.create_index("ix_model_promotions_dataset_hash", "model_promotions", ["dataset_hash"])


def downgrade() -> None:
    op.drop_table("model_promotions")
