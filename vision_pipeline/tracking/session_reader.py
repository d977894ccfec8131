"""Read an offline ClearML session back: what a sync would import, as plain data.

Used by ``clearml sync``, by ``vision-pipeline`` summaries and by the tests that check what the
pipeline recorded (scalars, artifacts, models, final status).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .clearml_session import STATUS_FILE


class SessionError(ValueError):
    """An offline session that cannot be read (missing, corrupt zip, no task.json)."""


@dataclass
class OfflineSession:
    path: Path
    task: dict[str, Any]
    status: dict[str, Any]
    scalars: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def task_id(self) -> str:
        return self.task["id"]

    @property
    def name(self) -> str:
        return self.task.get("name", "")

    @property
    def project(self) -> str:
        return self.task.get("project_name", "")

    @property
    def final_status(self) -> str | None:
        return self.status.get("status")

    @property
    def artifacts(self) -> dict[str, dict[str, Any]]:
        return {a["key"]: a for a in (self.task.get("execution") or {}).get("artifacts") or []}

    @property
    def models(self) -> list[dict[str, Any]]:
        return list(self.task.get("offline_output_models") or [])

    @property
    def hyperparams(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for section, values in (self.task.get("hyperparams") or {}).items():
            out[section] = {k: v.get("value") for k, v in values.items()}
        return out

    def series(self, title: str, series: str) -> dict[int, float]:
        return {e["iter"]: e["value"] for e in self.scalars if e.get("metric") == title and e.get("variant") == series}


def read_session(path: Path) -> OfflineSession:
    """A session folder or its ``.zip``."""
    path = Path(path)
    if not path.exists():
        raise SessionError(f"{path}: offline session does not exist")
    try:
        if path.is_file():
            with zipfile.ZipFile(path) as zf:
                files = {name: zf.read(name) for name in zf.namelist() if not name.endswith("/")}
        else:
            files = {
                p.relative_to(path).as_posix(): p.read_bytes()
                for p in path.iterdir()
                if p.is_file()
            }
    except (zipfile.BadZipFile, OSError) as exc:
        raise SessionError(f"{path}: corrupt offline session ({exc})") from exc
    if "task.json" not in files:
        raise SessionError(f"{path}: not an offline ClearML session (no task.json)")
    try:
        task = json.loads(files["task.json"])
        status = json.loads(files[STATUS_FILE]) if STATUS_FILE in files else {}
        events: list[dict[str, Any]] = []
        if "metrics.jsonl" in files:
            for line in files["metrics.jsonl"].decode().splitlines():
                if line.strip():
                    events.extend(json.loads(line))
    except (ValueError, UnicodeDecodeError) as exc:
        raise SessionError(f"{path}: corrupt offline session ({exc})") from exc
    scalars = [e for e in events if e.get("type") == "training_stats_scalar"]
    return OfflineSession(path=path, task=task, status=status, scalars=scalars, events=events)


def find_sessions(offline_root: Path) -> list[Path]:
    """Closed sessions (their zips) under the SDK's offline folder, oldest first."""
    if not offline_root.is_dir():
        return []
    return sorted(offline_root.glob("offline-*.zip"), key=lambda p: p.stat().st_mtime)


def session_for_task(offline_root: Path, task_id: str) -> OfflineSession:
    zipped = offline_root / f"{task_id}.zip"
    return read_session(zipped if zipped.exists() else offline_root / task_id)
