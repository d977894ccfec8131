"""Offline ClearML sessions already imported into a server (makes `clearml sync` idempotent).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clearml_synced_sessions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("offline_task_id", sa.String(255), nullable=False, unique=True),
        sa.Column("server_task_id", sa.String(255), nullable=False),
        sa.Column("session_path", sa.Text, nullable=False),
        sa.Column("api_host", sa.String(255)),
        sa.Column("rows_remapped", sa.Integer, nullable=False, server_default="0"),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_clearml_synced_sessions_server_task_id", "clearml_synced_sessions", ["server_task_id"])


def downgrade() -> None:
    op.drop_table("clearml_synced_sessions")
