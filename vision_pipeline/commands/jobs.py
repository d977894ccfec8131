"""`vision-pipeline jobs list [--json]` — the job rows, newest first."""

from __future__ import annotations

import argparse

from vision_pipeline import settings
from vision_pipeline.records.models import JOB_STATUSES, JOB_TABLES
from vision_pipeline.records.store import JobStore


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    ls = sub.add_parser("list", help="list job rows")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.add_argument("--kind", choices=sorted(JOB_TABLES))
    ls.add_argument("--status", choices=JOB_STATUSES)
    ls.add_argument("--limit", type=int, default=20)


def run(args: argparse.Namespace) -> int:
    store = JobStore(settings.database_url())
    store.ensure_schema()
    rows = store.list_jobs(args.kind, limit=args.limit, status=args.status)
    if args.json:
        from vision_pipeline.cli import print_json

        print_json(rows)
        return 0
    if not rows:
        print("no jobs yet")
        return 0
    print(f"{'kind':<10} {'id':>4}  {'status':<10} {'clearml task':<42} {'created':<20} summary")
    for row in rows:
        summary = _summary(row)
        print(f"{row['kind']:<10} {row['id']:>4}  {row['status']:<10} {row['clearml_task_id'] or '-':<42} "
              f"{(row['created_at'] or '')[:19]:<20} {summary}")
    return 0


def _summary(row: dict) -> str:
    if row["status"] == "failed":
        return (row.get("error") or "")[:80]
    result = row.get("result") or {}
    keys = ("mAP50", "mAP50-95", "images", "detections", "parity_passed", "content_hash")
    return " ".join(f"{k}={result[k]}" for k in keys if k in result)[:100]
