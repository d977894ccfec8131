"""`vision-pipeline ...`: operator commands. Plain argparse; each command lives in its own module.

A command module exposes ``add_arguments(parser)`` and ``run(args) -> int``; this file only wires them.
Errors that the code anticipated (bad configuration, unreachable backends) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from vision_pipeline.records.errors import RecordsError

# name -> (module, help). Modules are imported only when their command runs or its help is built.
COMMANDS: dict[str, tuple[str, str]] = {
    "db": ("vision_pipeline.commands.db", "job-record schema: upgrade, downgrade, current, history"),
    "jobs": ("vision_pipeline.commands.jobs", "list job rows"),
    "demo": ("vision_pipeline.commands.demo", "materialise the whole pipeline on embedded defaults and summarise"),
    "doctor": ("vision_pipeline.commands.doctor", "check every configured backend, one line each"),
    "clearml": ("vision_pipeline.commands.clearml", "ClearML: sync offline sessions into a server"),
    "mlflow-import": ("vision_pipeline.commands.mlflow_import", "import MLflow runs and models into ClearML"),
    "dev": ("vision_pipeline.commands.dev", "the Dagster UI and daemon on the embedded instance"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vision-pipeline", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod = importlib.import_module(module)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _known_errors() -> tuple[type[BaseException], ...]:
    from vision_pipeline.storage import StorageError
    from vision_pipeline.tracking import TrackingError
    from vision_pipeline.vision.errors import VisionInputError

    return (RecordsError, TrackingError, StorageError, VisionInputError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except _known_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def print_json(value) -> None:
    print(json.dumps(value, indent=2, default=str))


if __name__ == "__main__":
    sys.exit(main())
