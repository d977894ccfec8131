"""ClearML task ids on every job table (the migration of the old plan, Phase 12.2).

Downgrading is the rollback path: the columns go, but their values are kept in
``clearml_task_id_backup`` so that upgrading again restores every link. Nothing is lost.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = ("dataset_jobs", "training_jobs", "export_jobs", "inference_jobs")
BACKUP = "clearml_task_id_backup"


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("clearml_task_id", sa.String(255)))
            batch.create_index(f"ix_{table}_clearml_task_id", ["clearml_task_id"])

    bind = op.get_bind()
    if sa.inspect(bind).has_table(BACKUP):
        for table in TABLES:
            bind.execute(
                sa.text(
                    f"UPDATE {table} SET clearml_task_id = ("
                    f"SELECT b.clearml_task_id FROM {BACKUP} b "
                    f"WHERE b.table_name = :t AND b.job_id = {table}.id)"
                    f" WHERE EXISTS (SELECT 1 FROM {BACKUP} b WHERE b.table_name = :t AND b.job_id = {table}.id)"
                ),
                {"t": table},
            )
        op.drop_table(BACKUP)


def downgrade() -> None:
    bind = op.get_bind()
    if not sa.inspect(bind).has_table(BACKUP):
        op.create_table(
            BACKUP,
            sa.Column("table_name", sa.String(64), primary_key=True),
            sa.Column("job_id", sa.Integer, primary_key=True),
            sa.Column("clearml_task_id", sa.String(255), nullable=False),
        )
    for table in TABLES:
        bind.execute(
            sa.text(
                f"INSERT INTO {BACKUP} (table_name, job_id, clearml_task_id) "
                f"SELECT :t, id, clearml_task_id FROM {table} WHERE clearml_task_id IS NOT NULL"
            ),
            {"t": table},
        )
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_clearml_task_id")
            batch.drop_column("clearml_task_id")
