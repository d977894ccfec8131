"""`vision-pipeline mlflow-import --tracking-uri URI [--experiment NAME ...] [--run-id ID ...]
[--project-map EXPERIMENT=PROJECT ...] [--dry-run]` - MLflow runs and registered models into ClearML.

The job records come from ``VISION_PIPELINE_DATABASE_URL`` (the mapping MLflow run -> ClearML task
and the linked ``training_jobs`` rows), ClearML from ``CLEARML_*`` (offline sessions when no server
is configured). See docs/migrating-from-mlflow.md. Exit status: 0 all imported (partial imports are
listed), 1 some run failed or an experiment/run did not exist, 2 nothing could start.
"""

from __future__ import annotations

import argparse
import sys

from vision_pipeline import settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", required=True, metavar="URI",
                        help="MLflow tracking URI: sqlite:///path/mlflow.db, http(s)://server, ./mlruns (file store)")
    parser.add_argument("--registry-uri", metavar="URI", help="MLflow model registry URI (default: the tracking URI)")
    parser.add_argument("--experiment", action="append", default=[], metavar="NAME",
                        help="import this experiment's runs (repeatable; default: every active experiment)")
    parser.add_argument("--run-id", action="append", default=[], metavar="ID", help="import this run (repeatable)")
    parser.add_argument("--project-map", action="append", default=[], metavar="EXPERIMENT=PROJECT",
                        help="put this experiment's runs in this ClearML project (default: the experiment name)")
    parser.add_argument("--dry-run", action="store_true", help="print what would happen; change nothing")
    parser.add_argument("--retry-partial", action="store_true",
                        help="import partially imported runs again (into new tasks)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def parse_project_map(items: list[str]) -> dict[str, str]:
    """``EXPERIMENT=PROJECT`` pairs; the last ``=`` separates them (experiment names may contain one)."""
    out: dict[str, str] = {}
    for item in items:
        experiment, sep, project = item.rpartition("=")
        if not sep or not experiment.strip() or not project.strip():
            raise ValueError(f"--project-map {item!r}: expected EXPERIMENT=PROJECT")
        out[experiment.strip()] = project.strip()
    return out


def run(args: argparse.Namespace) -> int:
    from vision_pipeline.migration.mlflow_import import MLflowImportError, import_runs
    from vision_pipeline.records.store import JobStore
    from vision_pipeline.tracking.clearml_session import ClearMLTracker
    from vision_pipeline.tracking.env import clearml_config_from_env

    try:
        project_map = parse_project_map(args.project_map)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tracker = ClearMLTracker(clearml_config_from_env())
    store = JobStore(settings.database_url())
    try:
        summary = import_runs(
            args.tracking_uri,
            store=store,
            tracker=tracker,
            experiments=args.experiment,
            run_ids=args.run_id,
            project_map=project_map,
            dry_run=args.dry_run,
            retry_partial=args.retry_partial,
            registry_uri=args.registry_uri,
            progress=not args.no_progress,
            echo=print,
        )
    except MLflowImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        store.dispose()
    if args.json:
        from vision_pipeline.cli import print_json

        print_json(summary.to_dict())
    else:
        for line in summary.lines():
            print(line)
        if not args.dry_run and tracker.offline and (summary.imported or summary.partial):
            print(f"  ClearML offline sessions in {tracker.offline_root()}: run `vision-pipeline clearml sync` "
                  "to import them into a server")
    return 0 if summary.ok else 1
