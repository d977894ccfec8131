"""Alembic, driven from code: ``vision-pipeline db upgrade|downgrade|current`` and the resources call this."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import Engine

from .errors import RecordsError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Not alembic's default ``alembic_version``: Dagster's own PostgreSQL storage keeps its schema version
# there, and the two may share a database.
VERSION_TABLE = "vision_pipeline_alembic_version"


def _config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def script() -> ScriptDirectory:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg)


def head() -> str:
    return script().get_current_head()


def revisions() -> list[str]:
    """All revisions, oldest first."""
    return [rev.revision for rev in reversed(list(script().walk_revisions()))]


def _check_target(target: str) -> None:
    known = revisions()
    if target in ("head", "base") or target in known:
        return
    if target.startswith(("+", "-")) and target[1:].isdigit():
        return
    raise RecordsError(
        f"unknown migration target {target!r}: known revisions are {', '.join(known)} (or 'head', 'base')"
    )


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def upgrade(engine: Engine, target: str = "head") -> str | None:
    _check_target(target)
    return _run(engine, command.upgrade, target)


def downgrade(engine: Engine, target: str = "-1") -> str | None:
    _check_target(target)
    return _run(engine, command.downgrade, target)


def _run(engine: Engine, fn, target: str) -> str | None:
    cfg = _config(engine)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            fn(cfg, target)
    except CommandError as exc:
        raise RecordsError(f"migration to {target!r} failed: {exc}") from exc
    return current(engine)
