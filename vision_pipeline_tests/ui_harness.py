"""The Dagster UI as the tests see it: webserver + daemon subprocesses, a GraphQL client, headless Chromium.

``DagsterUI`` starts ``dagster-daemon run`` and ``dagster-webserver`` on a given instance (explicit
environment, so the code servers and the run processes they spawn see the same project home), waits
until the GraphQL API answers with the code location loaded (and the run queue daemon is healthy),
and always stops both process groups; on a failure it prints their logs.

Runs are launched with the same mutation the UI's launchpad sends (``launchPipelineExecution``, via
``dagster_graphql``'s client). The embedded instance uses the QueuedRunCoordinator, so a launched run
only starts once the daemon dequeues it.

``HeadlessChromium`` is a tiny Chrome DevTools Protocol driver (Debian's ``chromium`` and the
``websockets`` package that ``dagster-webserver`` already depends on through ``uvicorn[standard]``):
open a page, wait for text, click a button, dump the DOM, take a screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import requests

from vision_pipeline import settings
from vision_pipeline.instance import EMBEDDED_DAGSTER_YAML

WORKSPACE = settings.PROJECT_ROOT / "workspace.yaml"
LOCATION = "vision_pipeline"
REPOSITORY = "__repository__"  # the repository name Dagster gives a plain `Definitions`
JOB = "retrain_job"

# Variables that point the pipeline at real servers; a test's webserver never inherits them.
SERVER_ENV = (
    "CLEARML_API_HOST", "CLEARML_WEB_HOST", "CLEARML_FILES_HOST", "CLEARML_API_ACCESS_KEY",
    "CLEARML_API_SECRET_KEY", "CLEARML_OFFLINE_MODE", "VISION_PIPELINE_DATABASE_URL",
    "VISION_PIPELINE_S3_BUCKET", "DAGSTER_HOME",
)

TERMINAL_RUN_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}

# `pipeline_helpers.tiny_run_config()` as the plain run config the launchpad (GraphQL) takes:
# 64/16 synthetic images of 64 px, two epochs, no quality gate. test_ui checks the two stay in step.
TINY_RUN_CONFIG: dict[str, Any] = {
    "ops": {
        "dataset": {"config": {"synthetic_train_images": 64, "synthetic_val_images": 16, "synthetic_imgsz": 64}},
        "trained_checkpoint": {
            "config": {"model": "yolo11n.yaml", "epochs": 2, "imgsz": 64, "batch": 16, "min_map50": 0.0},
        },
        "exported_model": {"config": {"parity_images": 4}},
        "inference_outputs": {"config": {"max_previews": 3}},
    }
}


class UIHarnessError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------------
# instance and environment


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_instance(dagster_home: Path) -> Path:
    """A Dagster home holding the embedded instance's dagster.yaml (telemetry off, queued runs)."""
    dagster_home = Path(dagster_home)
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(EMBEDDED_DAGSTER_YAML)
    return dagster_home


def initialise_storage(dagster_home: Path) -> None:
    """Create the instance's SQLite databases once, here.

    On a fresh home the webserver, the daemon and their code servers would each create them at the same
    time, and SQLite's schedule storage then ends up with two alembic heads ("Version table
    'alembic_version' has more than one head present").
    """
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(dagster_home)):
        pass


def isolated_env(vp_home: Path, dagster_home: Path, *, base: Mapping[str, str] | None = None,
                 drop: Iterable[str] = SERVER_ENV, **extra: str) -> dict[str, str]:
    """``base`` (default: this process's environment) without server settings, pointed at one home."""
    dropped = set(drop)
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in dropped}
    env.update(
        VISION_PIPELINE_HOME=str(vp_home),
        DAGSTER_HOME=str(dagster_home),
        YOLO_OFFLINE="1",
        DAGSTER_DISABLE_TELEMETRY="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def _bin(name: str) -> str:
    """A console script of this interpreter's environment (the venv), else from PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise UIHarnessError(f"'{name}' is not installed in {Path(sys.executable).parent} nor on PATH")
    return found


# --------------------------------------------------------------------------------------------------
# processes


class _Proc:
    """A subprocess in its own process group, its output in a log file."""

    def __init__(self, name: str, argv: list[str], *, env: Mapping[str, str], cwd: Path, log_path: Path) -> None:
        self.name, self.argv, self.log_path = name, argv, log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            argv, env=dict(env), cwd=str(cwd), stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM to the whole group, then SIGKILL to whatever of it is left (code servers, runs)."""
        pgid = self.popen.pid  # start_new_session: the leader's pid is the group id
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()

    def tail(self, max_chars: int = 6000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<no log: {exc}>"
        return text[-max_chars:]


class DagsterUI:
    """``with DagsterUI(dagster_home=..., env=...) as ui:`` — webserver (and daemon) up, and always torn down."""

    def __init__(
        self,
        *,
        dagster_home: Path,
        env: Mapping[str, str],
        workspace: Path = WORKSPACE,
        cwd: Path = settings.PROJECT_ROOT,
        port: int | None = None,
        daemon: bool = True,
        log_dir: Path | None = None,
        startup_timeout_s: float = 600.0,
        location: str = LOCATION,
        job: str | None = JOB,
    ) -> None:
        self.dagster_home = Path(dagster_home)
        self.env = {**env, "DAGSTER_HOME": str(self.dagster_home)}
        self.workspace, self.cwd = Path(workspace), Path(cwd)
        self.port = port or free_port()
        self.daemon = daemon
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="dagster-ui-logs-"))
        self.startup_timeout_s = startup_timeout_s
        self.location, self.job = location, job
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: list[_Proc] = []
        self.startup_seconds: float | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> DagsterUI:
        try:
            self.start()
        except BaseException:
            self.print_logs("startup failed")
            self.stop()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.print_logs(f"failed with {exc_type.__name__}")
        self.stop()

    def start(self) -> None:
        started = time.monotonic()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        initialise_storage(self.dagster_home)
        if self.daemon:
            self.procs.append(_Proc(
                "dagster-daemon",
                [_bin("dagster-daemon"), "run", "-w", str(self.workspace)],
                env=self.env, cwd=self.cwd, log_path=self.log_dir / "daemon.log",
            ))
        self.procs.append(_Proc(
            "dagster-webserver",
            [_bin("dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.port), "-w", str(self.workspace)],
            env=self.env, cwd=self.cwd, log_path=self.log_dir / "webserver.log",
        ))
        self.wait_until_ready(self.startup_timeout_s)
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs = []

    def print_logs(self, why: str) -> None:
        for proc in self.procs:
            print(f"\n----- {proc.name} ({why}; {proc.log_path}) -----\n{proc.tail()}", file=sys.stderr)

    def _check_alive(self) -> None:
        for proc in self.procs:
            if not proc.alive():
                raise UIHarnessError(f"{proc.name} exited with code {proc.popen.returncode}:\n{proc.tail(3000)}")

    def wait_until_ready(self, timeout_s: float) -> None:
        """/server_info answers, the code location is loaded (the job exists), the run-queue daemon beats."""
        deadline = time.monotonic() + timeout_s
        last = "webserver not answering"
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                last = self._readiness_problem()
            except requests.RequestException as exc:
                last = f"webserver not answering: {exc.__class__.__name__}"
            if not last:
                return
            time.sleep(1.0)
        raise UIHarnessError(f"Dagster UI at {self.url} not ready after {timeout_s:.0f} s: {last}")

    def _readiness_problem(self) -> str:
        requests.get(f"{self.url}/server_info", timeout=10).raise_for_status()
        data = self.graphql(_LOCATION_QUERY)
        entries = data["workspaceOrError"].get("locationEntries") or []
        entry = next((e for e in entries if e["name"] == self.location), None)
        if entry is None:
            return f"code location '{self.location}' not in the workspace yet"
        loaded = entry["locationOrLoadError"]
        if loaded is None or entry["loadStatus"] != "LOADED":
            return f"code location '{self.location}' is {entry['loadStatus']}"
        if loaded["__typename"] == "PythonError":
            raise UIHarnessError(f"code location '{self.location}' failed to load:\n{loaded['message']}\n"
                                 + "".join(loaded.get("stack") or []))
        if self.job and not any(p["name"] == self.job for r in loaded["repositories"] for p in r["pipelines"]):
            raise UIHarnessError(f"job '{self.job}' not in code location '{self.location}'")
        if self.daemon:
            statuses = data["instance"]["daemonHealth"]["allDaemonStatuses"]
            queue = next((s for s in statuses if s["daemonType"] == "QUEUED_RUN_COORDINATOR"), None)
            if queue is None or not queue["healthy"]:
                return "the QUEUED_RUN_COORDINATOR daemon has no healthy heartbeat yet"
        return ""

    # -- GraphQL -----------------------------------------------------------------------------------

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None, timeout_s: float = 120) -> dict:
        """POST /graphql; returns ``data`` (raises on transport or GraphQL errors)."""
        resp = requests.post(f"{self.url}/graphql", json={"query": query, "variables": dict(variables or {})},
                             timeout=timeout_s)
        resp.raise_for_status()
        body = resp.json()
        if body.get("errors"):
            raise UIHarnessError(f"GraphQL errors: {json.dumps(body['errors'], indent=2)[:4000]}")
        return body["data"]

    def client(self):
        from dagster_graphql import DagsterGraphQLClient

        return DagsterGraphQLClient("127.0.0.1", port_number=self.port, timeout=120)

    def launch(self, run_config: Mapping[str, Any], *, job: str = JOB, tags: Mapping[str, str] | None = None) -> str:
        """Launch ``job`` the way the launchpad does: the ``launchPipelineExecution`` mutation. Returns the run id."""
        return self.client().submit_job_execution(
            job, repository_location_name=self.location, repository_name=REPOSITORY,
            run_config=dict(run_config), tags=dict(tags or {}),
        )

    def run_status(self, run_id: str) -> str:
        data = self.graphql(_RUN_STATUS_QUERY, {"runId": run_id})["runOrError"]
        if data["__typename"] != "Run":
            raise UIHarnessError(f"run {run_id}: {data['__typename']}: {data.get('message')}")
        return data["status"]

    def wait_for_run(self, run_id: str, timeout_s: float = 900.0, poll_s: float = 3.0,
                     on_status: Callable[[str, float], None] | None = None) -> str:
        """Poll until the run is SUCCESS/FAILURE/CANCELED; raises on timeout (the daemon must dequeue it)."""
        started = time.monotonic()
        status = None
        while time.monotonic() - started < timeout_s:
            self._check_alive()
            new = self.run_status(run_id)
            if new != status and on_status:
                on_status(new, time.monotonic() - started)
            status = new
            if status in TERMINAL_RUN_STATUSES:
                return status
            time.sleep(poll_s)
        raise UIHarnessError(f"run {run_id} still {status} after {timeout_s:.0f} s")

    def run_failure_summary(self, run_id: str, limit: int = 20) -> str:
        """The run's error events, for an assertion message."""
        data = self.graphql(_RUN_ERRORS_QUERY, {"runId": run_id})["logsForRun"]
        events = data.get("events") or []
        lines = []
        for e in events:
            if e["__typename"] not in ("ExecutionStepFailureEvent", "RunFailureEvent", "EngineEvent"):
                continue
            error = e.get("error")
            if e["__typename"] == "EngineEvent" and not error:
                continue
            line = f"{e['__typename']} {e.get('stepKey') or ''}: {e.get('message')}"
            if error:
                line += f"\n  {error['message'].strip()}"
                cause = error.get("cause")
                if cause:
                    line += f"\n  caused by {cause['className']}: {cause['message'].strip()}"
                    line += "\n" + "".join(cause.get("stack") or [])[-1500:]
            lines.append(line)
        return "\n".join(lines[-limit:]) or "(no error events)"

    def run_config_schema(self, job: str = JOB) -> dict:
        """What the launchpad loads: ``rootDefaultYaml`` (the scaffold) and every config type of the job."""
        selector = {"repositoryLocationName": self.location, "repositoryName": REPOSITORY, "pipelineName": job}
        data = self.graphql(_RUN_CONFIG_SCHEMA_QUERY, {"selector": selector})["runConfigSchemaOrError"]
        if data["__typename"] != "RunConfigSchema":
            raise UIHarnessError(f"runConfigSchemaOrError: {data['__typename']}: {data.get('message')}")
        return data

    def op_config_fields(self, op: str, job: str = JOB) -> dict[str, dict]:
        """The launchpad form's fields for ``ops.<op>.config``: name -> description, default (parsed), required."""
        schema = self.run_config_schema(job)
        types = {t["key"]: t for t in schema["allConfigTypes"]}

        def field(type_key: str, name: str) -> dict:
            fields = {f["name"]: f for f in types[type_key].get("fields") or []}
            if name not in fields:
                raise UIHarnessError(f"config type {type_key} has no field '{name}' (has {sorted(fields)})")
            return fields[name]

        ops = field(schema["rootConfigType"]["key"], "ops")
        config = field(field(ops["configTypeKey"], op)["configTypeKey"], "config")
        out = {}
        for f in types[config["configTypeKey"]]["fields"]:
            default = f["defaultValueAsJson"]
            out[f["name"]] = {
                "description": f["description"],
                "required": f["isRequired"],
                "has_default": default is not None,
                "default": json.loads(default) if default is not None else None,
                "type": f["configTypeKey"],
            }
        return out


_LOCATION_QUERY = """
query VisionPipelineReadiness {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { repositories { name pipelines { name } } }
          ... on PythonError { message stack }
        }
      }
    }
  }
  instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } }
}
"""

_RUN_STATUS_QUERY = """
query VisionPipelineRunStatus($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}
"""

_RUN_ERRORS_QUERY = """
query VisionPipelineRunErrors($runId: ID!) {
  logsForRun(runId: $runId, limit: 2000) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message stepKey }
        ... on ErrorEvent { error { message cause { className message stack } } }
      }
    }
  }
}
"""

_RUN_CONFIG_SCHEMA_QUERY = """
query VisionPipelineRunConfigSchema($selector: PipelineSelector!) {
  runConfigSchemaOrError(selector: $selector) {
    __typename
    ... on RunConfigSchema {
      rootDefaultYaml
      rootConfigType { key }
      allConfigTypes {
        key
        ... on CompositeConfigType {
          fields { name description isRequired configTypeKey defaultValueAsJson }
        }
      }
    }
    ... on PythonError { message }
    ... on PipelineNotFoundError { message }
    ... on InvalidSubsetError { message }
  }
}
"""


# --------------------------------------------------------------------------------------------------
# headless Chromium


CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
)


def chromium_executable() -> str | None:
    """Debian's ``chromium`` ($CHROMIUM overrides), or None."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_cli(url: str, *, dump_dom: bool = False, screenshot: Path | None = None,
                 virtual_time_budget_ms: int = 15000, window: tuple[int, int] = (1600, 1000),
                 timeout_s: float = 180) -> str:
    """One-shot ``chromium --headless --dump-dom`` / ``--screenshot``; returns stdout (the DOM when dumping)."""
    exe = chromium_executable()
    if not exe:
        raise UIHarnessError("chromium is not installed (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        argv = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}",
                f"--virtual-time-budget={virtual_time_budget_ms}"]
        if dump_dom:
            argv.append("--dump-dom")
        if screenshot is not None:
            argv.append(f"--screenshot={screenshot}")
        argv.append(url)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, start_new_session=True)
        if proc.returncode != 0:
            raise UIHarnessError(f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}")
        return proc.stdout


class HeadlessChromium:
    """A minimal Chrome DevTools Protocol driver: one page, synchronous commands."""

    def __init__(self, *, width: int = 1600, height: int = 1000, startup_timeout_s: float = 60) -> None:
        self.width, self.height = width, height
        self.startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen | None = None
        self._ws = None
        self._profile: str | None = None
        self._log = None
        self._next_id = 0

    def __enter__(self) -> HeadlessChromium:
        exe = chromium_executable()
        if not exe:
            raise UIHarnessError("chromium is not installed (apt-get install -y chromium)")
        self._profile = tempfile.mkdtemp(prefix="chromium-profile-")
        try:
            self._log = open(Path(self._profile) / "chromium.log", "wb")  # noqa: SIM115 - closed in __exit__
            self._proc = subprocess.Popen(
                [exe, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile}", "--remote-debugging-port=0",
                 "--remote-allow-origins=*", f"--window-size={self.width},{self.height}", "about:blank"],
                stdout=subprocess.DEVNULL, stderr=self._log, stdin=subprocess.DEVNULL, start_new_session=True,
            )
            self._connect()
            self.send("Page.enable")
            self.send("Runtime.enable")
            self.send("Emulation.setDeviceMetricsOverride",
                      {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _connect(self) -> None:
        from websockets.sync.client import connect

        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.startup_timeout_s
        while not port_file.exists() or not port_file.read_text().strip():
            if self._proc.poll() is not None:
                raise UIHarnessError(f"chromium exited {self._proc.returncode}: {self.log()[-2000:]}")
            if time.monotonic() > deadline:
                raise UIHarnessError("chromium did not open its DevTools port")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        targets = []
        while not targets:
            targets = [t for t in requests.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
                       if t.get("type") == "page"]
            if not targets and time.monotonic() > deadline:
                raise UIHarnessError("chromium has no page target")
            time.sleep(0.2)
        # Entered as a context manager (websockets >= 17.1 warns otherwise); left in __exit__.
        self._ws = connect(targets[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=30).__enter__()

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._ws is not None:
            try:
                self._ws.__exit__(None, None, None)  # closes the socket
            except Exception:  # noqa: BLE001 - closing a dead socket
                pass
            self._ws = None
        if self._proc is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self._proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self._proc.wait(timeout=10)
                    break
                except subprocess.TimeoutExpired:
                    continue
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._profile:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None

    def log(self) -> str:
        try:
            return (Path(self._profile) / "chromium.log").read_text(errors="replace")
        except (OSError, TypeError):
            return ""

    def send(self, method: str, params: Mapping[str, Any] | None = None, timeout_s: float = 60) -> dict:
        self._next_id += 1
        msg_id = self._next_id
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": dict(params or {})}))
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UIHarnessError(f"CDP {method}: no answer in {timeout_s} s")
            reply = json.loads(self._ws.recv(timeout=remaining))
            if reply.get("id") != msg_id:
                continue  # an event
            if "error" in reply:
                raise UIHarnessError(f"CDP {method}: {reply['error']}")
            return reply.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise UIHarnessError(f"JS error in {expression[:80]!r}: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def dom(self) -> str:
        return self.evaluate("document.documentElement.outerHTML") or ""

    def wait_for(self, predicate: Callable[[str], bool], timeout_s: float = 90, poll_s: float = 0.5) -> str:
        """Poll the page's visible text until ``predicate(text)``; returns the text (raises on timeout)."""
        deadline = time.monotonic() + timeout_s
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if predicate(text):
                return text
            time.sleep(poll_s)
        raise UIHarnessError(f"page text never matched in {timeout_s:.0f} s; it was:\n{text[:3000]}")

    def click_button(self, label: str) -> bool:
        """Click the first visible button whose text is ``label``; False when there is none."""
        return bool(self.evaluate(
            "(() => { const b = [...document.querySelectorAll('button')]"
            f".find(b => b.innerText.trim() === {json.dumps(label)} && b.offsetParent !== null);"
            " if (!b) return false; b.click(); return true; })()"
        ))

    def screenshot(self, path: Path, *, full_page: bool = False) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        data = self.send("Page.captureScreenshot", params, timeout_s=120)["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


COMMUNITY_DIALOG_TITLE = "Join the Dagster community"


def dismiss_community_dialog(browser: HeadlessChromium, timeout_s: float = 10) -> bool:
    """The first-visit "Join the Dagster community" dialog: click Skip if it shows up (True if it did)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if COMMUNITY_DIALOG_TITLE in browser.text():
            if browser.click_button("Skip"):
                end = time.monotonic() + 10
                while COMMUNITY_DIALOG_TITLE in browser.text() and time.monotonic() < end:
                    time.sleep(0.2)
                return True
        time.sleep(0.3)
    return False
