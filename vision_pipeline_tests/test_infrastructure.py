"""Static checks of the deployment files in ``infrastructure/`` — no Docker engine needed.

What is checked:

* the compose file parses, has every required service, pins every image (no ``latest``, no untagged
  image), publishes no host port twice, declares every named volume it uses (and uses every one it
  declares), and gives every long-running service a healthcheck;
* the environment: the variable names in ``infrastructure/.env.example`` and in the compose file's
  ``${VAR}`` interpolations are exactly the ones the code reads (found by scanning
  ``vision_pipeline/**/*.py``), give or take three explicit, commented lists below:
  ``NOT_OPERATOR_SETTINGS`` (SDK-internal names the code touches but an operator does not set),
  ``INFRA_ONLY`` (read by the infrastructure containers, not by the code) and ``ANNOUNCED`` (names
  being added to the code right now);
* the Dagster wiring: ``dagster.yaml``'s ``env:`` entries are documented and reach the Dagster
  processes, ``workspace.docker.yaml`` points at the code-location service's host and port, and the
  Dockerfile's CMD serves the module ``workspace.yaml`` loads;
* PostgreSQL: ``init.sql`` creates the databases the example URLs name.

A variable the code starts to read makes exactly one test fail —
``test_env_example_documents_every_variable_the_code_reads`` — until it is added to ``.env.example``
(the code-location container gets the whole ``.env`` through ``env_file``, so nothing else needs to change).
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import tomllib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CODE_DIR = ROOT / "vision_pipeline"
INFRA = ROOT / "infrastructure"
COMPOSE = INFRA / "docker-compose.yaml"
ENV_EXAMPLE = INFRA / ".env.example"
DOCKERFILE = INFRA / "Dockerfile"
WORKSPACE_DOCKER = INFRA / "workspace.docker.yaml"
INIT_SQL = INFRA / "postgres" / "init.sql"

CODE_LOCATION = "dagster-code-location"
DAGSTER_SERVICES = ("dagster-webserver", "dagster-daemon", CODE_LOCATION)
CLEARML_SERVICES = ("clearml-apiserver", "clearml-webserver", "clearml-fileserver")
REQUIRED_SERVICES = {
    "postgres",
    "clearml-elastic", "clearml-mongo", "clearml-redis", *CLEARML_SERVICES,
    *DAGSTER_SERVICES,
    "minio", "minio-init",
}
ONE_SHOT_SERVICES = {"minio-init"}  # run to completion; no healthcheck

# Names the code reads or writes that an operator does not set. Each is someone else's variable.
NOT_OPERATOR_SETTINGS = {
    # The ClearML SDK's "master process" marker: the tracker removes a stale inherited one before Task.init.
    "CLEARML_PROC_MASTER_ID": "ClearML SDK internal; cleared by the tracker when inherited",
    "TRAINS_PROC_MASTER_ID": "ClearML SDK internal (legacy name); cleared by the tracker when inherited",
    # ultralytics' own settings: settings.configure_ultralytics() setdefault()s them (offline, settings file
    # inside the project home, quiet) before ultralytics is imported.
    "YOLO_OFFLINE": "ultralytics; defaulted by settings.configure_ultralytics()",
    "YOLO_CONFIG_DIR": "ultralytics; defaulted to <project home>/ultralytics",
    "YOLO_VERBOSE": "ultralytics; defaulted to False",
    # The ClearML SDK's cache folder: the tracker *writes* it (the project home's clearml/ folder) before
    # every task, so an operator value would be overwritten.
    "CLEARML_CACHE_DIR": "ClearML SDK; set by ClearMLTracker from VISION_PIPELINE_HOME",
    # The ClearML SDK's alternative credential; the pipeline authenticates with the key pair. doctor reads
    # it only to keep its value out of what it prints.
    "CLEARML_AUTH_TOKEN": "ClearML SDK; read by doctor only to redact it",
    # The MLflow client's own settings, which the one-off `vision-pipeline mlflow-import` (run by hand against
    # the old platform, not by the deployed stack) adjusts around its own calls: it allows reading a legacy
    # file store, and probes the tracking server once with no retries, restoring the operator's values after.
    "MLFLOW_ALLOW_FILE_STORE": "MLflow client; set by mlflow-import for ./mlruns URIs",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "MLflow client; saved, overridden and restored around mlflow-import's probe",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "MLflow client; defaulted and restored around mlflow-import's probe",
}

# Read by the infrastructure containers only (compose interpolates them), never by vision_pipeline.
INFRA_ONLY = {
    "POSTGRES_USER": "postgres image: owner role of the dagster and vision_pipeline databases",
    "POSTGRES_PASSWORD": "postgres image: that role's password (repeated in the two database URLs)",
}

# Being added to the code while this file was written (retraining sensor, weekly schedule, promotion
# gate). Documented ahead; a warning lists the ones the code does not read yet.
ANNOUNCED = {
    "VISION_PIPELINE_WATCH_DIR",
    "VISION_PIPELINE_MIN_RETRAIN_INTERVAL_S",
    "VISION_PIPELINE_RETRAIN_CRON",
    "VISION_PIPELINE_SCHEDULE_ENABLED",
    "VISION_PIPELINE_PROMOTION_TOLERANCE",
}

SECRET_NAMES = {"CLEARML_API_ACCESS_KEY", "CLEARML_API_SECRET_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN", "POSTGRES_PASSWORD"}
PLACEHOLDER = re.compile(r"change-?me|<[^>]+>", re.IGNORECASE)


# ------------------------------------------------------------------------------------ code scanning

ENV_NAME = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$")
# Any exact string constant with one of these prefixes is one of our (or our SDKs') variables, however
# the code reads it (a helper, a tuple it loops over, a module constant).
ENV_PREFIXES = ("VISION_PIPELINE_", "CLEARML_", "DAGSTER_", "AWS_", "YOLO_", "MLFLOW_")
# Calls that take a variable name: getenv, EnvVar, _env, env, get_env, _env_int, env_float, ...
ENV_CALL = re.compile(r"^(?:_?(?:get_?)?env(?:var)?(?:_[a-z]+)?|EnvVar)$", re.IGNORECASE)
ENVIRON_NAMES = {"environ", "env", "environment", "environ_", "_environ"}


def _is_environ(node: ast.AST) -> bool:
    """``os.environ``, ``environ``, or a local mapping called ``env``/``environ``/``environment``."""
    if isinstance(node, ast.Attribute):
        return node.attr == "environ"
    return isinstance(node, ast.Name) and node.id in ENVIRON_NAMES


def _call_name(func: ast.AST) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def env_names_in_source(source: str) -> set[str]:
    """Environment variable names a module reads.

    Forms: ``os.environ.get("X")``, ``os.environ["X"]`` (not as an assignment target), ``"X" in os.environ``,
    ``os.environ.setdefault/pop("X")``, ``getenv("X")``, ``dg.EnvVar("X")``/``EnvVar("X")``, ``_env("X")`` and
    other ``*env*`` helpers, ``env.get("X")`` on a local mapping, any call that is handed the environment
    (``_get(env, "X")``), a module-level constant holding the name, and any exact string constant with one
    of ``ENV_PREFIXES``.
    """
    tree = ast.parse(source)
    constants: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(getattr(node, "value", None), ast.Constant):
            value = node.value.value
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and isinstance(value, str):
                    constants[target.id] = value

    def literal(node: ast.AST | None) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            value = node.value
        elif isinstance(node, ast.Name) and node.id in constants:
            value = constants[node.id]
        else:
            return None
        return value if ENV_NAME.match(value) else None

    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.startswith(ENV_PREFIXES) and ENV_NAME.match(node.value):
                found.add(node.value)
        elif isinstance(node, ast.Call):
            name = _call_name(node.func)
            args = [*node.args, *(kw.value for kw in node.keywords)]
            if isinstance(node.func, ast.Attribute) and _is_environ(node.func.value) and node.func.attr in (
                "get", "setdefault", "pop", "__getitem__", "__contains__"
            ):
                candidates = node.args[:1]
            elif name and ENV_CALL.match(name):
                candidates = args[:1]
            elif any(_is_environ(a) for a in args):
                candidates = args
            else:
                continue
            found.update(n for n in map(literal, candidates) if n)
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _is_environ(node.value):
            if (n := literal(node.slice)):
                found.add(n)
        elif isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            if any(_is_environ(c) for c in node.comparators) and (n := literal(node.left)):
                found.add(n)
    return found


def code_env_reads() -> dict[str, set[str]]:
    """Variable name -> the modules (relative paths) that read it, over ``vision_pipeline/**/*.py``."""
    out: dict[str, set[str]] = {}
    for path in sorted(CODE_DIR.rglob("*.py")):
        for name in env_names_in_source(path.read_text(encoding="utf-8")):
            out.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return out


def code_vars() -> set[str]:
    return set(code_env_reads()) - set(NOT_OPERATOR_SETTINGS)


# ------------------------------------------------------------------------------------- file parsing


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def services() -> dict[str, dict[str, Any]]:
    return load_compose()["services"]


ENV_LINE = re.compile(r"^(#\s?)?([A-Z][A-Z0-9_]*)=(.*)$")


def env_example() -> dict[str, tuple[bool, str]]:
    """``.env.example``: name -> (active, value). ``# NAME=value`` lines are documented optional settings."""
    out: dict[str, tuple[bool, str]] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        m = ENV_LINE.match(line.strip())
        if not m:
            continue
        active, name, value = m.group(1) is None, m.group(2), m.group(3).strip()
        value = value.split(" #", 1)[0].strip().strip("'\"") if not value.startswith(("'", '"')) else value.strip("'\"")
        if name not in out or active:
            out[name] = (active, value)
    return out


INTERPOLATION = re.compile(r"(?<!\$)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def compose_interpolations() -> dict[str, str]:
    """``${VAR...}`` / ``$VAR`` in the compose file's values (comments and ``$$`` escapes excluded): name -> modifier."""
    out: dict[str, str] = {}
    for text in _strings(load_compose()):
        for m in INTERPOLATION.finditer(text):
            name = m.group(1) or m.group(3)
            modifier = m.group(2) or ""
            if name not in out or modifier.startswith((":?", "?")):
                out[name] = modifier
    return out


def service_environment(service: dict[str, Any]) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return {item.split("=", 1)[0]: (item.split("=", 1)[1] if "=" in item else None) for item in env}
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def service_env_files(service: dict[str, Any]) -> list[str]:
    files = service.get("env_file") or []
    files = [files] if isinstance(files, (str, dict)) else files
    return [f["path"] if isinstance(f, dict) else f for f in files]


def command_of(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command")
    if cmd is None:
        return dockerfile_cmd()
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        lines.append(current)
        current = ""
    out = []
    for line in lines:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def dockerfile_cmd() -> list[str]:
    cmds = [args for word, args in dockerfile_instructions() if word == "CMD"]
    assert cmds, "infrastructure/Dockerfile has no CMD"
    args = cmds[-1]
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def copy_paths(args: str) -> tuple[list[str], str]:
    """A COPY instruction's (sources, destination), flags such as ``--chown=`` dropped."""
    words = json.loads(args) if args.startswith("[") else [w for w in shlex.split(args) if not w.startswith("--")]
    return words[:-1], words[-1]


def option(argv: list[str], *names: str) -> str | None:
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
            if name.startswith("--") and arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def split_image(ref: str) -> tuple[str, str | None]:
    """``registry:5000/name:tag@digest`` -> (``registry:5000/name``, ``tag``); the tag is None when missing."""
    ref = ref.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        return ref[: -(len(last) - last.index(":"))], last.split(":", 1)[1]
    return ref, None


def named_volumes_used(service: dict[str, Any]) -> list[str]:
    out = []
    for vol in service.get("volumes") or []:
        if isinstance(vol, dict):
            if vol.get("type", "volume") == "volume" and vol.get("source"):
                out.append(vol["source"])
            continue
        source = str(vol).split(":", 1)[0]
        if ":" in str(vol) and not source.startswith((".", "/", "~", "$")):
            out.append(source)
    return out


def bind_sources(service: dict[str, Any]) -> list[str]:
    out = []
    for vol in service.get("volumes") or []:
        source = vol.get("source") if isinstance(vol, dict) and vol.get("type") == "bind" else str(vol).split(":", 1)[0]
        if source and source.startswith((".", "/", "~")):
            out.append(source)
    return out


def published_ports(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host ip, host port, protocol) for each published port; unpublished container ports are skipped."""
    out = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            if port.get("published") is None:
                continue
            out.append((str(port.get("host_ip", "0.0.0.0")), str(port["published"]), port.get("protocol", "tcp")))
            continue
        text, _, proto = str(port).partition("/")
        parts = text.rsplit(":", 2)
        if len(parts) == 1:
            continue  # container port only: not published on a fixed host port
        ip = parts[0] if len(parts) == 3 else "0.0.0.0"
        out.append((ip.strip("[]"), parts[-2], proto or "tcp"))
    return out


def _expand_ports(spec: str) -> list[int]:
    lo, _, hi = spec.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


# ---------------------------------------------------------------------------------------------- tests


def test_scanner_finds_every_supported_form() -> None:
    """The scanner itself, on every way the code (now or later) may read a variable."""
    source = '''
import os
import dagster as dg
from dagster import EnvVar
from os import getenv
WATCH = "VISION_PIPELINE_WATCH_DIR"
def f(env, environ=None):
    os.environ.get("A_ONE")
    os.environ["A_TWO"]
    os.environ["WRITTEN_ONLY"] = "x"
    os.environ.setdefault("A_THREE", "1")
    _env("A_FOUR")
    dg.EnvVar("A_FIVE")
    EnvVar("A_SIX")
    getenv("A_SEVEN")
    os.getenv("A_EIGHT", "d")
    env.get("A_NINE")
    _get(env, "A_TEN")
    _env_float("A_ELEVEN", 1.0)
    if "A_TWELVE" in os.environ: pass
    os.environ.get(WATCH)
    for name in ("CLEARML_SOMETHING_NEW", "not an env name"):
        os.environ.get(name)
    print("A_NOT_READ", "CLEARML_API_HOST is set")
'''
    found = env_names_in_source(source)
    assert found == {
        "A_ONE", "A_TWO", "A_THREE", "A_FOUR", "A_FIVE", "A_SIX", "A_SEVEN", "A_EIGHT", "A_NINE", "A_TEN",
        "A_ELEVEN", "A_TWELVE", "VISION_PIPELINE_WATCH_DIR", "CLEARML_SOMETHING_NEW",
    }


def test_scanner_sees_the_known_reads() -> None:
    """Sanity: the variables the foundation modules are known to read are found."""
    reads = code_env_reads()
    for name in ("VISION_PIPELINE_HOME", "VISION_PIPELINE_DATABASE_URL", "DAGSTER_HOME", "CLEARML_API_HOST",
                 "CLEARML_OFFLINE_MODE", "VISION_PIPELINE_S3_BUCKET", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        assert name in reads, f"the scanner no longer finds {name}: fix env_names_in_source"


def test_compose_has_the_required_services() -> None:
    missing = REQUIRED_SERVICES - set(services())
    assert not missing, f"infrastructure/docker-compose.yaml lacks services {sorted(missing)}"
    for name in ("minio", "minio-init"):
        assert "s3" in (services()[name].get("profiles") or []), f"{name} must be in the optional 's3' profile"
    for name, svc in services().items():
        if name not in {"minio", "minio-init"}:
            assert not svc.get("profiles"), f"{name} must start without a profile"


def test_every_image_is_pinned() -> None:
    problems = []
    for name, svc in services().items():
        image = svc.get("image")
        if not image:
            problems.append(f"{name}: no image (a built service needs image: name:tag too)")
            continue
        if "$" in image:
            problems.append(f"{name}: image {image!r} is interpolated; pin a literal tag")
            continue
        repo, tag = split_image(image)
        if tag is None and "@sha256:" not in image:
            problems.append(f"{name}: image {image!r} has no tag")
        elif tag is not None and (tag == "latest" or tag.endswith("-latest") or tag in ("stable", "edge", "main")):
            problems.append(f"{name}: image {image!r} uses a moving tag")
    for word, args in dockerfile_instructions():
        if word == "FROM":
            image = args.split()[0]
            _, tag = split_image(image)
            if tag is None or tag == "latest":
                problems.append(f"Dockerfile: base image {image!r} is not pinned")
    assert not problems, "\n".join(problems)


def test_clearml_server_components_share_one_pinned_image() -> None:
    images = {services()[n]["image"] for n in CLEARML_SERVICES}
    assert len(images) == 1, f"apiserver, webserver and fileserver must run the same ClearML server build: {images}"


def test_dagster_processes_share_the_built_image() -> None:
    svcs = services()
    images = {svcs[n]["image"] for n in DAGSTER_SERVICES}
    assert len(images) == 1, f"webserver, daemon and code location must run the same image (same Dagster): {images}"
    for name in DAGSTER_SERVICES:
        build = svcs[name].get("build")
        assert build, f"{name} must build the image (so `up --build` never tries to pull it)"
        dockerfile = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
        context = build.get("context", ".") if isinstance(build, dict) else build
        assert (COMPOSE.parent / context / dockerfile).resolve() == DOCKERFILE.resolve(), (
            f"{name} builds {context}/{dockerfile}, not infrastructure/Dockerfile")
        assert (COMPOSE.parent / context).resolve() == ROOT, f"{name}: the build context must be the repository root"


def test_published_ports_do_not_collide() -> None:
    bound: list[tuple[str, str, int, str]] = []  # (ip, protocol, port, service)
    for name, svc in services().items():
        for ip, host_port, proto in published_ports(svc):
            bound.extend((ip, proto, port, name) for port in _expand_ports(host_port))
    wildcard = {"0.0.0.0", "::", ""}
    problems = sorted({
        f"{a[3]} and {b[3]} both publish {a[1]} port {a[2]}"
        for i, a in enumerate(bound) for b in bound[i + 1:]
        if a[1:3] == b[1:3] and (a[0] == b[0] or a[0] in wildcard or b[0] in wildcard)
    })
    assert not problems, "\n".join(problems)


def test_named_volumes_are_declared_and_used() -> None:
    compose = load_compose()
    declared = set(compose.get("volumes") or {})
    used: dict[str, list[str]] = {}
    for name, svc in compose["services"].items():
        for vol in named_volumes_used(svc):
            used.setdefault(vol, []).append(name)
    undeclared = {v: s for v, s in used.items() if v not in declared}
    assert not undeclared, f"named volumes used but not declared under top-level volumes: {undeclared}"
    unused = declared - set(used)
    assert not unused, f"volumes declared but used by no service: {sorted(unused)}"
    for name, svc in compose["services"].items():
        for source in bind_sources(svc):
            assert (COMPOSE.parent / source).exists(), f"{name} bind-mounts {source}, which does not exist"


def test_services_have_healthchecks_and_valid_dependencies() -> None:
    svcs = services()
    problems = []
    for name, svc in svcs.items():
        if name not in ONE_SHOT_SERVICES:
            test = (svc.get("healthcheck") or {}).get("test")
            if not test or test == ["NONE"]:
                problems.append(f"{name}: no healthcheck")
        deps = svc.get("depends_on") or {}
        for dep, spec in (deps.items() if isinstance(deps, dict) else ((d, {}) for d in deps)):
            if dep not in svcs:
                problems.append(f"{name}: depends on unknown service {dep}")
                continue
            condition = (spec or {}).get("condition", "service_started")
            if condition == "service_healthy" and not (svcs[dep].get("healthcheck") or {}).get("test"):
                problems.append(f"{name}: waits for {dep} to be healthy, but {dep} has no healthcheck")
            if svcs[dep].get("profiles") and not svc.get("profiles") and (spec or {}).get("required", True):
                problems.append(f"{name}: depends on {dep} (profile {svcs[dep]['profiles']}) without required: false")
    assert not problems, "\n".join(problems)


def test_env_example_documents_every_variable_the_code_reads() -> None:
    """THE check that a new variable trips: add it to infrastructure/.env.example (commented out when optional)."""
    documented = set(env_example())
    reads = code_env_reads()
    missing = sorted(set(reads) - set(NOT_OPERATOR_SETTINGS) - documented)
    assert not missing, "variables the code reads but infrastructure/.env.example does not document:\n" + "\n".join(
        f"  {name}  (read in {', '.join(sorted(reads[name]))})" for name in missing
    ) + ("\nadd each to infrastructure/.env.example (commented out if optional) and docs/configuration.md; "
         "an SDK's own variable that no operator sets goes to NOT_OPERATOR_SETTINGS in this file, with the reason")


def dagster_yaml_env_names() -> set[str]:
    """The ``{env: NAME}`` entries of the top-level dagster.yaml (Dagster reads them, not vision_pipeline)."""
    names: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if set(value) == {"env"}:
                names.add(str(value["env"]))
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(yaml.safe_load((ROOT / "dagster.yaml").read_text(encoding="utf-8")))
    return names


def test_env_example_names_nothing_the_code_does_not_read() -> None:
    known = code_vars() | dagster_yaml_env_names() | set(INFRA_ONLY) | ANNOUNCED
    stale = sorted(set(env_example()) - known)
    assert not stale, (f"infrastructure/.env.example documents {stale}, which nothing in vision_pipeline/ reads "
                       "(renamed? removed?) and which is not an INFRA_ONLY variable")
    not_yet = sorted(ANNOUNCED - code_vars())
    if not_yet:
        warnings.warn(f"documented ahead, not read by the code yet: {', '.join(not_yet)}", stacklevel=1)


def test_compose_interpolates_only_documented_code_or_infra_variables() -> None:
    interpolated = compose_interpolations()
    example = env_example()
    undocumented = sorted(set(interpolated) - set(example))
    assert not undocumented, f"docker-compose.yaml interpolates {undocumented}, missing from .env.example"
    unknown = sorted(set(interpolated) - code_vars() - dagster_yaml_env_names() - set(INFRA_ONLY) - ANNOUNCED)
    assert not unknown, f"docker-compose.yaml interpolates {unknown}: neither read by the code nor INFRA_ONLY"
    required_but_commented = sorted(n for n, mod in interpolated.items()
                                    if mod.startswith((":?", "?")) and not example.get(n, (False, ""))[0])
    assert not required_but_commented, (f"docker-compose.yaml requires {required_but_commented} (${{VAR:?}}), "
                                        "but .env.example has them commented out")


def test_code_location_gets_every_variable_from_the_env_file() -> None:
    """Runs, sensors and schedules execute in the code location: it reads the whole .env, so every documented
    variable reaches the code; only the in-image paths are fixed over it."""
    svc = services()[CODE_LOCATION]
    assert ".env" in service_env_files(svc), f"{CODE_LOCATION} must load infrastructure/.env with env_file"
    env = service_environment(svc)
    assert env.get("DAGSTER_HOME") == "/opt/dagster/home"
    assert env.get("VISION_PIPELINE_HOME"), "the project home must be fixed to the mounted volume"
    mounted = {str(v).split(":")[1] for v in svc.get("volumes") or [] if isinstance(v, str) and ":" in v}
    assert env["VISION_PIPELINE_HOME"] in mounted, "VISION_PIPELINE_HOME must be a mounted volume"
    assert f"{env['DAGSTER_HOME']}/storage" in mounted, "DAGSTER_HOME/storage (compute logs) must be a shared volume"


def test_dagster_yaml_env_entries_are_documented_and_reach_the_dagster_processes() -> None:
    names = dagster_yaml_env_names()
    assert names, "dagster.yaml reads no environment variable? (expected DAGSTER_POSTGRES_URL)"
    example = env_example()
    for name in sorted(names):
        assert example.get(name, (False, ""))[0], f"dagster.yaml reads {name}: .env.example must set it (uncommented)"
        for svc_name in DAGSTER_SERVICES:
            svc = services()[svc_name]
            env = service_environment(svc)
            assert name in env or ".env" in service_env_files(svc), f"{svc_name} does not receive {name}"
            assert env.get("DAGSTER_HOME") == "/opt/dagster/home", f"{svc_name}: DAGSTER_HOME must be the image's"
    copies = [copy_paths(args) for word, args in dockerfile_instructions() if word == "COPY"]
    assert any("dagster.yaml" in sources and dest.startswith("/opt/dagster/home") for sources, dest in copies), (
        "the Dockerfile must copy the top-level dagster.yaml into DAGSTER_HOME (/opt/dagster/home)")


def test_workspace_docker_points_at_the_code_location() -> None:
    workspace = yaml.safe_load(WORKSPACE_DOCKER.read_text(encoding="utf-8"))
    grpc = [entry["grpc_server"] for entry in workspace["load_from"] if "grpc_server" in entry]
    assert len(grpc) == 1, "workspace.docker.yaml must load exactly one grpc_server"
    server = grpc[0]
    svc = services()[CODE_LOCATION]
    assert server["host"] in {CODE_LOCATION, svc.get("hostname"), svc.get("container_name")}, (
        f"workspace.docker.yaml host {server['host']!r} is not the {CODE_LOCATION} service")
    argv = command_of(svc)
    assert argv[:3] == ["dagster", "api", "grpc"], f"{CODE_LOCATION} does not run `dagster api grpc`: {argv}"
    assert option(argv, "-h", "--host") == "0.0.0.0", "the gRPC server must listen on all interfaces"
    assert str(server["port"]) == option(argv, "-p", "--port"), (
        f"workspace.docker.yaml port {server['port']} != the code location's -p {option(argv, '-p', '--port')}")
    health = " ".join(map(str, (svc.get("healthcheck") or {}).get("test") or []))
    assert f"-p {server['port']}" in health, "the code location's healthcheck must probe the gRPC port"
    local = yaml.safe_load((ROOT / "workspace.yaml").read_text(encoding="utf-8"))
    names = {e["python_module"].get("location_name") for e in local["load_from"] if "python_module" in e}
    assert server.get("location_name") in names, (
        "workspace.docker.yaml's location_name must equal workspace.yaml's, so schedules, sensors and asset "
        "history keep one location name across the embedded and the deployed setup")
    for name in ("dagster-webserver", "dagster-daemon"):
        argv = command_of(services()[name])
        workspace_arg = option(argv, "-w", "--workspace")
        assert workspace_arg and workspace_arg.endswith("workspace.docker.yaml"), f"{name} must load workspace.docker.yaml"
    copied = [copy_paths(args) for word, args in dockerfile_instructions() if word == "COPY"]
    assert any("infrastructure/workspace.docker.yaml" in sources for sources, _ in copied), (
        "the Dockerfile must copy infrastructure/workspace.docker.yaml into the image")


def test_dockerfile_serves_the_module_workspace_yaml_loads() -> None:
    argv = dockerfile_cmd()
    module = option(argv, "-m", "--module-name")
    local = yaml.safe_load((ROOT / "workspace.yaml").read_text(encoding="utf-8"))
    modules = {e["python_module"]["module_name"] for e in local["load_from"] if "python_module" in e}
    assert module in modules, f"Dockerfile CMD serves {module!r}, workspace.yaml loads {sorted(modules)}"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["tool"]["dagster"]["module_name"] == module
    compose_argv = command_of(services()[CODE_LOCATION])
    assert option(compose_argv, "-m", "--module-name") == module


def test_postgres_init_creates_the_databases_the_urls_name() -> None:
    from sqlalchemy.engine import make_url

    sql = INIT_SQL.read_text(encoding="utf-8")
    created = {m.lower() for m in re.findall(r"CREATE\s+DATABASE\s+\"?(\w+)\"?", sql, re.IGNORECASE)}
    assert {"dagster", "vision_pipeline"} <= created, f"init.sql creates {sorted(created)}"
    example = env_example()
    for name in ("DAGSTER_POSTGRES_URL", "VISION_PIPELINE_DATABASE_URL"):
        url = make_url(example[name][1])
        assert url.host == "postgres", f"{name} must point at the compose service 'postgres'"
        assert url.database in created, f"{name} names database {url.database!r}, which init.sql does not create"
        assert url.username == example["POSTGRES_USER"][1], f"{name} must use POSTGRES_USER"
        assert url.password == example["POSTGRES_PASSWORD"][1], f"{name} must use POSTGRES_PASSWORD"
    volumes = " ".join(map(str, services()["postgres"].get("volumes") or []))
    assert "./postgres/init.sql:/docker-entrypoint-initdb.d/" in volumes, "postgres must run init.sql on first start"


def test_env_example_secrets_are_placeholders() -> None:
    from sqlalchemy.engine import make_url

    example = env_example()
    for name in SECRET_NAMES & set(example):
        value = example[name][1]
        assert not value or PLACEHOLDER.search(value), f".env.example: {name} must be a placeholder, not {value!r}"
    for name, (_, value) in example.items():
        if "://" in value and "@" in value and not value.startswith("http"):
            password = make_url(value).password
            assert password is None or PLACEHOLDER.search(password), f".env.example: {name} embeds a real-looking password"
