"""`vision-pipeline doctor`: one line per configured backend - ok, or what is wrong and how to fix it.

Exit code 0 when nothing FAILed (warnings and skipped backends included), 1 otherwise.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per network check (default 3)")


def run(args: argparse.Namespace) -> int:
    from vision_pipeline.doctor import report

    lines, code = report(timeout=args.timeout)
    for line in lines:
        print(line)
    return code
