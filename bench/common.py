"""Shared pieces of the benchmarks: the Figure record, interleaved A/B runs, statistics, subprocesses."""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
WORK_ROOT = BENCH_DIR / "work"  # git-ignored: caches that later runs may reuse (MLflow database, ...)
PYTHON = sys.executable
MB = 1_000_000  # throughput is reported in decimal MB/s
MiB = 1024 * 1024

# Variables that would point a benchmark at a server or bucket: the figures are measured on the embedded
# defaults (offline ClearML, SQLite job rows, local artifacts) unless a benchmark says otherwise.
_ENV_TO_DROP_PREFIXES = ("CLEARML_", "VISION_PIPELINE_", "AWS_", "DAGSTER_", "MLFLOW_")


@dataclass
class Figure:
    """One reported number. ``met``: True/False against ``target``, None when there is no verdict."""

    bench: str  # "1", "3a", ...
    name: str
    value: float | None
    unit: str
    target: str
    met: bool | None
    detail: str = ""
    group: str = "cpu"  # "cpu" or "gpu"
    status: str = ""  # "", "SKIPPED", "ERROR", "INCONCLUSIVE"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        if self.status in ("SKIPPED", "ERROR", "INCONCLUSIVE"):
            return self.status
        if self.met is True:
            return "met"
        if self.met is False:
            return "MISSED"
        return "info"

    def to_json(self, mode: str) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = self.verdict
        data["mode"] = mode
        data["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        return data


def skipped(bench: str, name: str, unit: str, target: str, why: str, group: str = "cpu") -> Figure:
    return Figure(bench, name, None, unit, target, None, why, group=group, status="SKIPPED")


# ------------------------------------------------------------------------------------------- stats


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 1]."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo = math.floor(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass
class Comparison:
    """An interleaved A/B comparison: per-pair values of both sides and their ratios (a / b)."""

    a: list[float]
    b: list[float]

    @property
    def ratios(self) -> list[float]:
        return [x / y for x, y in zip(self.a, self.b) if y]

    @property
    def ratio(self) -> float:
        return median(self.ratios)

    @property
    def spread(self) -> tuple[float, float]:
        r = self.ratios
        return (min(r), max(r)) if r else (float("nan"), float("nan"))

    def describe(self, fmt: str = "{:.3f}") -> str:
        lo, hi = self.spread
        pairs = ", ".join(fmt.format(r) for r in self.ratios)
        return (f"median of {len(self.ratios)} interleaved pairs, spread {fmt.format(lo)}..{fmt.format(hi)} "
                f"(pairs: {pairs})")


def interleave(run_a: Callable[[int], float], run_b: Callable[[int], float], pairs: int,
               log: Callable[[str], None] | None = None, labels: tuple[str, str] = ("A", "B")) -> Comparison:
    """Run A B A B ... ``pairs`` times (each call gets the pair index); the order alternates which side
    goes first in every other pair (A B, B A, A B, ...) so a slow drift of the machine's load hits both."""
    comp = Comparison([], [])
    for i in range(pairs):
        order = (("a", run_a), ("b", run_b)) if i % 2 == 0 else (("b", run_b), ("a", run_a))
        got: dict[str, float] = {}
        for side, fn in order:
            got[side] = fn(i)
            if log:
                log(f"    pair {i + 1}/{pairs} {labels[0] if side == 'a' else labels[1]}: {got[side]:.4g}")
        comp.a.append(got["a"])
        comp.b.append(got["b"])
    return comp


def round_robin(arms: Mapping[str, Callable[[int], float]], rounds: int,
                log: Callable[[str], None] | None = None) -> dict[str, list[float]]:
    """Like :func:`interleave` for any number of arms: every round runs each arm once, the starting arm
    rotating from round to round (A B C, B C A, C A B, ...)."""
    names = list(arms)
    got: dict[str, list[float]] = {n: [] for n in names}
    for i in range(rounds):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            got[name].append(arms[name](i))
            if log:
                log(f"    round {i + 1}/{rounds} {name}: {got[name][-1]:.4g}")
    return got


# ------------------------------------------------------------------------------------- processes


def clean_env(**overrides: str) -> dict[str, str]:
    """This process's environment without server/bucket/home settings, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_TO_DROP_PREFIXES)}
    env.update({"YOLO_OFFLINE": "1", "DAGSTER_DISABLE_TELEMETRY": "1", "PYTHONUNBUFFERED": "1"})
    env.update(overrides)
    return env


@dataclass
class ProcResult:
    rc: int
    seconds: float
    log: Path
    maxrss_kib: int | None = None

    def tail(self, n: int = 30) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


def run_process(cmd: Sequence[str], *, env: Mapping[str, str], log: Path, timeout: float,
                cwd: Path | None = None) -> ProcResult:
    """Run ``cmd`` with stdout+stderr into ``log``; wall time and the child's peak RSS (via wait4)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as sink:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), env=dict(env), stdout=sink, stderr=subprocess.STDOUT,
                                cwd=str(cwd or REPO_ROOT), start_new_session=True)
        deadline = t0 + timeout
        maxrss = None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                seconds = time.perf_counter() - t0
                proc.returncode = os.waitstatus_to_exitcode(status)
                maxrss = usage.ru_maxrss
                break
            if time.perf_counter() > deadline:
                os.killpg(proc.pid, 9)
                proc.wait()
                raise TimeoutError(f"{' '.join(map(str, cmd[:4]))} ... ran past {timeout:.0f} s; log: {log}")
            time.sleep(0.05)
    return ProcResult(proc.returncode, seconds, log, maxrss)


def run_worker(target: str, args: Mapping[str, Any], *, log: Path, timeout: float,
               env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Call ``module:function(**args)`` in a fresh interpreter (``bench._worker``); return its JSON result."""
    out = log.with_suffix(".json")
    out.unlink(missing_ok=True)
    res = run_process([PYTHON, "-m", "bench._worker", target, json.dumps(args), str(out)],
                      env=env or clean_env(), log=log, timeout=timeout)
    if res.rc != 0 or not out.is_file():
        raise RuntimeError(f"{target} failed (exit {res.rc}); last lines of {log}:\n{res.tail(15)}")
    data = json.loads(out.read_text())
    data.setdefault("_worker_seconds", res.seconds)
    data.setdefault("_worker_maxrss_kib", res.maxrss_kib)
    return data


def self_maxrss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class Workspace:
    """Scratch space of one bench run: a temp dir removed at the end (``--keep`` keeps it)."""

    def __init__(self, keep: bool = False) -> None:
        WORK_ROOT.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="run-", dir=WORK_ROOT))
        self.keep = keep

    def path(self, *parts: str) -> Path:
        p = self.root.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p

    def cleanup(self) -> None:
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.1f}"
    elif abs(value) >= 1:
        text = f"{value:.3f}"
    else:
        text = f"{value:.4g}"
    return f"{text} {unit}".strip()
