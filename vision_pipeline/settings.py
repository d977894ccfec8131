"""Where the pipeline keeps its state, resolved from the environment at call time.

No Dagster here: the CLI, the Dagster layer and the tests all call these functions.
Nothing is read at import time, so a test can point ``VISION_PIPELINE_HOME`` at ``tmp_path``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def home() -> Path:
    """The project home: ``$VISION_PIPELINE_HOME`` or ``.vision_pipeline/`` in the working copy."""
    raw = os.environ.get("VISION_PIPELINE_HOME")
    path = Path(raw).expanduser() if raw else PROJECT_ROOT / ".vision_pipeline"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def subdir(name: str) -> Path:
    path = home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url() -> str:
    """Job-record database: ``$VISION_PIPELINE_DATABASE_URL`` or SQLite in the home."""
    url = os.environ.get("VISION_PIPELINE_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{home() / 'jobs.sqlite'}"


def artifacts_dir() -> Path:
    return subdir("artifacts")


def work_dir() -> Path:
    """Scratch space for datasets, training runs, exports and predictions."""
    return subdir("work")


def clearml_dir() -> Path:
    """ClearML SDK cache; offline sessions land in ``<this>/offline``."""
    return subdir("clearml")


def configure_ultralytics() -> None:
    """Keep ultralytics offline and its settings file inside the project home.

    Called by the vision modules before they import ultralytics (never at import time of this module).
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(subdir("ultralytics")))
    os.environ.setdefault("YOLO_VERBOSE", "False")


@contextmanager
def temporary_env(values: Mapping[str, str], defaults: Mapping[str, str] | None = None) -> Iterator[None]:
    """Set ``values`` (and ``defaults`` where unset) in ``os.environ`` for the block; restore them after."""
    defaults = defaults or {}
    saved = {name: os.environ.get(name) for name in (*values, *defaults)}
    os.environ.update(values)
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
