"""`vision-pipeline clearml sync [--dry-run]` and `vision-pipeline clearml sessions`.

``sync`` imports the offline sessions under ``<home>/clearml/offline`` into the server named by
``CLEARML_API_HOST`` (keys from ``CLEARML_API_ACCESS_KEY``/``CLEARML_API_SECRET_KEY``) and points the
job rows at the server's task ids; see ``vision_pipeline.tracking.sync`` for the guarantees.
``sessions`` lists what is stored offline and whether it was synced; it needs no server.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vision_pipeline import settings
from vision_pipeline.records.store import JobStore


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    sync = sub.add_parser("sync", help="import every offline session into the configured ClearML server")
    sync.add_argument("--dry-run", action="store_true",
                      help="check the server and list what would be imported; import and change nothing")
    sub.add_parser("sessions", help="list the offline sessions: synced or not, task name, final status")


def _offline_root() -> Path:
    return settings.clearml_dir() / "offline"


def _store() -> JobStore:
    store = JobStore(settings.database_url())
    store.ensure_schema()
    return store


def run(args: argparse.Namespace) -> int:
    if args.action == "sync":
        return _sync(args)
    return _sessions()


def _sync(args: argparse.Namespace) -> int:
    from vision_pipeline.tracking.env import clearml_config_from_env
    from vision_pipeline.tracking.sync import require_online, sync_offline_sessions

    config = clearml_config_from_env()
    require_online(config)  # before the database is opened: without a server there is nothing to do
    config.validate()
    store = _store()
    try:
        report = sync_offline_sessions(config, store, offline_root=_offline_root(), dry_run=args.dry_run)
    finally:
        store.dispose()
    for line in report.lines():
        print(line)
    return 0 if report.ok else 1


def _sessions() -> int:
    from vision_pipeline.tracking.session_reader import SessionError, read_session
    from vision_pipeline.tracking.sync import JOURNAL_NAME, SyncJournal

    root = _offline_root()
    store = _store()
    try:
        with store.session() as s:
            from sqlalchemy import select

            from vision_pipeline.records.models import ClearMLSyncedSession

            synced = {r.offline_task_id: r.server_task_id for r in s.scalars(select(ClearMLSyncedSession))}
    finally:
        store.dispose()
    journaled, _, _ = SyncJournal(root / JOURNAL_NAME).read()
    zips = sorted(root.glob("offline-*.zip"), key=lambda p: p.stat().st_mtime) if root.is_dir() else []
    open_dirs = sorted(p for p in root.glob("offline-*") if p.is_dir() and not p.with_suffix(".zip").exists()) \
        if root.is_dir() else []
    if not zips and not open_dirs:
        print(f"no offline sessions in {root}")
        return 0
    print(f"{'state':<10} {'task id':<42} {'final':<10} {'server task':<34} name")
    counts: dict[str, int] = {}
    for path in zips:
        oid = path.stem
        try:
            session = read_session(path)
            oid, name, final = session.task_id, session.name, session.final_status or "-"
        except SessionError as exc:
            name, final = f"unreadable: {exc}", "-"
            state = "corrupt"
        else:
            state = "synced" if oid in synced else ("resume" if oid in journaled else "pending")
        counts[state] = counts.get(state, 0) + 1
        server = synced.get(oid) or (journaled[oid].server_task_id if oid in journaled else "-")
        print(f"{state:<10} {oid:<42} {final:<10} {server:<34} {name}")
    for folder in open_dirs:
        print(f"{'open':<10} {folder.name:<42} {'-':<10} {'-':<34} still running, or its process ended without closing it")
    todo = counts.get("pending", 0) + counts.get("resume", 0)
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    print(f"{len(zips)} closed sessions in {root}: {summary}"
          + ("; run `vision-pipeline clearml sync` to import the rest" if todo else ""))
    return 0
