"""The Dagster instance the CLI uses: $DAGSTER_HOME when set, else an embedded SQLite one in the project home."""

from __future__ import annotations

import os
from pathlib import Path

from vision_pipeline import settings

EMBEDDED_DAGSTER_YAML = """\
# Embedded Dagster instance written by vision-pipeline: SQLite storage in this folder.
# For production (PostgreSQL) point DAGSTER_HOME at the repository's dagster.yaml instead.
telemetry:
  enabled: false
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 1
"""


def dagster_home() -> Path:
    """$DAGSTER_HOME if set (it must hold a dagster.yaml), else ``<project home>/dagster`` (created)."""
    raw = os.environ.get("DAGSTER_HOME")
    if raw:
        return Path(raw).expanduser().resolve()
    path = settings.subdir("dagster")
    config = path / "dagster.yaml"
    if not config.exists():
        config.write_text(EMBEDDED_DAGSTER_YAML)
    return path


def get_instance():
    """The Dagster instance (imports dagster lazily; the plain modules never need it)."""
    from dagster import DagsterInstance

    home = dagster_home()
    os.environ["DAGSTER_HOME"] = str(home)
    return DagsterInstance.get()
