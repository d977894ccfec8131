"""`vision-pipeline dev [--port 3000]` — the Dagster UI and daemon (`dagster dev`) on the embedded instance.

DAGSTER_HOME is the instance the other commands use (``$DAGSTER_HOME``, else the embedded SQLite one
under the project home, telemetry off, runs queued and started by the daemon). It runs from the
repository root with ``workspace.yaml``, so what `vision-pipeline demo` materialised shows up in the UI.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from vision_pipeline import settings
from vision_pipeline.instance import dagster_home


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=3000, help="webserver port (default 3000)")
    parser.add_argument("--host", default="127.0.0.1", help="webserver host (default 127.0.0.1)")
    parser.add_argument("--dry-run", action="store_true", help="print DAGSTER_HOME and the command, start nothing")


def command(host: str, port: int) -> list[str]:
    dagster = Path(sys.executable).parent / "dagster"
    launcher = [str(dagster)] if dagster.exists() else [sys.executable, "-m", "dagster"]
    workspace = settings.PROJECT_ROOT / "workspace.yaml"
    return [*launcher, "dev", "-w", str(workspace), "-h", host, "-p", str(port)]


def run(args: argparse.Namespace) -> int:
    home = dagster_home()
    argv = command(args.host, args.port)
    print(f"DAGSTER_HOME={home}")
    print(f"project home {settings.home()}")
    print(" ".join(argv))
    if args.dry_run:
        return 0
    env = {**os.environ, "DAGSTER_HOME": str(home), "VISION_PIPELINE_HOME": str(settings.home())}
    print(f"Dagster UI on http://{args.host}:{args.port} (Ctrl-C stops the webserver and the daemon)", flush=True)
    proc = subprocess.Popen(argv, cwd=settings.PROJECT_ROOT, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached `dagster dev` too (same terminal process group): let it stop its children.
        try:
            return proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.terminate()
            return proc.wait()
