"""`vision-pipeline db upgrade|downgrade|current|history` — the job-record schema (Alembic)."""

from __future__ import annotations

import argparse

from vision_pipeline import settings
from vision_pipeline.records import migrate
from vision_pipeline.records.store import JobStore, redact_url


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    up = sub.add_parser("upgrade", help="migrate to REV (default: head)")
    up.add_argument("rev", nargs="?", default="head")
    down = sub.add_parser("downgrade", help="roll back to REV (default: one step); 'base' drops the job tables")
    down.add_argument("rev", nargs="?", default="-1")
    sub.add_parser("current", help="print the database's revision")
    sub.add_parser("history", help="list the migrations")


def run(args: argparse.Namespace) -> int:
    if args.action == "history":
        for rev in migrate.script().walk_revisions():
            print(f"{rev.revision}  {rev.doc.splitlines()[0] if rev.doc else ''}")
        return 0
    url = settings.database_url()
    store = JobStore(url)
    where = redact_url(url)
    if args.action == "upgrade":
        before = store.current_revision()
        after = store.upgrade(args.rev)
        print(f"{where}: {before or 'empty'} -> {after}")
    elif args.action == "downgrade":
        before = store.current_revision()
        after = store.downgrade(args.rev)
        print(f"{where}: {before or 'empty'} -> {after or 'base (no job tables)'}")
    else:
        rev = store.current_revision()
        state = "up to date" if rev == migrate.head() else f"behind head {migrate.head()}: run `vision-pipeline db upgrade`"
        print(f"{where}: {rev or 'empty'} ({state})")
    return 0
