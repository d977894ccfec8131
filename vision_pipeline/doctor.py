"""`vision-pipeline doctor`: check every configured backend and say, one line each, what is wrong and how to fix it.

Plain Python (no Dagster import). Backends, all read from the environment when called:

* ``clearml-api``    ``CLEARML_API_HOST``: ``debug.ping`` (with its response time), then ``auth.login`` with the keys
* ``clearml-web``    ``CLEARML_WEB_HOST``: HTTP reachability
* ``clearml-files``  ``CLEARML_FILES_HOST``: HTTP reachability
* ``job-records``    ``VISION_PIPELINE_DATABASE_URL`` (or the SQLite default): connect, migration revision vs head
* ``dagster-storage`` ``DAGSTER_HOME``: folder, ``dagster.yaml``, which storage; Postgres is connected to
* ``artifacts``      ``VISION_PIPELINE_S3_BUCKET`` (S3) or the local artifact folder: ``store.check()``

Every network step has a short timeout (3 s) and the checks run concurrently. No secret value (keys,
passwords) is ever printed: URLs are redacted and every line is scrubbed of the configured secrets.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from vision_pipeline import settings

TIMEOUT = 3.0
OK, FAIL, WARN, SKIP = "ok", "FAIL", "warn", "skip"


@dataclass(frozen=True)
class Check:
    status: str  # ok | FAIL | warn | skip
    backend: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<5} {self.backend:<16} {self.detail}"


# ------------------------------------------------------------------------------------------ helpers


def redact_http_url(url: str) -> str:
    """``http://user:pw@host`` -> ``http://user:***@host``; other URLs unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values that must never be printed: keys, secrets, tokens, passwords, and the password of any URL
    in the environment (VISION_PIPELINE_DATABASE_URL, DAGSTER_POSTGRES_URL, ...)."""
    env = os.environ if environ is None else environ
    values: list[str | None] = [env.get("CLEARML_API_ACCESS_KEY")]
    for name, value in env.items():
        upper = name.upper()
        if any(word in upper for word in ("SECRET", "PASSWORD", "TOKEN", "PASSWD")):
            values.append(value)
        if "://" in (value or "") and "@" in value:
            values.append(_url_password(value))
            try:
                values.append(urlsplit(value).password)
            except ValueError:
                pass
    return sorted({v for v in values if v and len(v) >= 4}, key=len, reverse=True)


def _url_password(url: str) -> str | None:
    if not url:
        return None
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).password
    except Exception:  # noqa: BLE001 - not a SQLAlchemy URL
        return None


def scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
        quoted = quote(secret, safe="")
        if quoted != secret:
            text = text.replace(quoted, "***")
    return text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ------------------------------------------------------------------------------------------ ClearML


def check_clearml(timeout: float = TIMEOUT) -> list[Check]:
    from vision_pipeline.tracking.env import clearml_config_from_env
    from vision_pipeline.tracking.session_reader import find_sessions
    from vision_pipeline.tracking.sync import ServerUnavailable, check_credentials, http_get, ping_api

    config = clearml_config_from_env()
    if config.offline:
        root = settings.clearml_dir() / "offline"
        why = "CLEARML_OFFLINE_MODE is set" if config.api_host else "no CLEARML_API_HOST"
        n = len(find_sessions(root))
        detail = (f"offline mode ({why}): sessions stored in {root} ({n} closed); to use a server set "
                  "CLEARML_API_HOST and the keys" + (", then run `vision-pipeline clearml sync`" if n else ""))
        return [Check(SKIP, "clearml-api", detail), Check(SKIP, "clearml-web", "offline mode"),
                Check(SKIP, "clearml-files", "offline mode")]

    out: list[Check] = []
    host = config.api_host.rstrip("/")
    shown = redact_http_url(host)
    try:
        ping_ms = ping_api(host, timeout=timeout)
    except ServerUnavailable as exc:
        out.append(Check(FAIL, "clearml-api", str(exc)))
    else:
        try:
            login_ms = check_credentials(host, config.access_key, config.secret_key, timeout=timeout)
        except ServerUnavailable as exc:
            out.append(Check(FAIL, "clearml-api", f"{shown} debug.ping {ping_ms:.0f} ms, but {exc}"))
        else:
            out.append(Check(OK, "clearml-api", f"{shown} debug.ping {ping_ms:.0f} ms, credentials accepted "
                                                f"(auth.login {login_ms:.0f} ms)"))

    for backend, var, url, role in (("clearml-web", "CLEARML_WEB_HOST", config.web_host, "web UI"),
                                    ("clearml-files", "CLEARML_FILES_HOST", config.files_host, "file server")):
        if not url:
            out.append(Check(SKIP, backend, f"{var} not set: the SDK derives the {role} address from CLEARML_API_HOST"))
            continue
        url = url.rstrip("/")
        shown = redact_http_url(url)
        if not url.startswith(("http://", "https://")):
            out.append(Check(FAIL, backend, f"{var} must be an http(s) URL, got {shown!r}"))
            continue
        try:
            status, _, ms = http_get(url + "/", timeout=timeout)
        except ServerUnavailable as exc:
            out.append(Check(FAIL, backend, f"{shown} unreachable ({exc}): start the ClearML {role} or fix {var}"))
            continue
        if status >= 500:
            out.append(Check(FAIL, backend, f"{shown} answered HTTP {status}: the ClearML {role} is failing, "
                                            "check its container logs"))
        else:
            out.append(Check(OK, backend, f"{shown} HTTP {status} {ms:.0f} ms"))
    return out


# ---------------------------------------------------------------------------------------- job records


def check_job_records(timeout: float = TIMEOUT) -> Check:
    from sqlalchemy.engine import make_url

    from vision_pipeline.records import migrate
    from vision_pipeline.records.errors import RecordsError
    from vision_pipeline.records.store import JobStore, redact_url

    url = settings.database_url()
    shown = redact_url(url)
    try:
        parsed = make_url(url)
    except Exception as exc:  # noqa: BLE001
        return Check(FAIL, "job-records", f"VISION_PIPELINE_DATABASE_URL is not a valid SQLAlchemy URL ({_first_line(exc)})")
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database)
        if not path.exists():
            folder = path.parent
            if folder.is_dir() and os.access(folder, os.W_OK):
                return Check(OK, "job-records", f"{shown} not created yet: created and migrated on the first run "
                                                "(or `vision-pipeline db upgrade`)")
            return Check(FAIL, "job-records", f"{shown}: folder {folder} does not exist or is not writable: create it "
                                              "or point VISION_PIPELINE_DATABASE_URL elsewhere")
    try:
        store = JobStore(url, connect_timeout=int(max(1, timeout)))
    except RecordsError as exc:
        return Check(FAIL, "job-records", str(exc))
    try:
        t0 = time.perf_counter()
        rev = store.current_revision()
        ms = (time.perf_counter() - t0) * 1000
    except RecordsError as exc:
        return Check(FAIL, "job-records", str(exc))
    except Exception as exc:  # noqa: BLE001 - driver errors not wrapped by the store
        return Check(FAIL, "job-records", f"job-record database {shown}: {_first_line(exc)}")
    finally:
        store.dispose()
    head = migrate.head()
    if rev == head:
        return Check(OK, "job-records", f"{shown} at revision {rev} (head), {ms:.0f} ms")
    if rev is None:
        return Check(WARN, "job-records", f"{shown} reachable but empty (no job tables): run `vision-pipeline db "
                                          "upgrade` (the pipeline also creates them on its first run)")
    if rev in migrate.revisions():
        return Check(FAIL, "job-records", f"{shown} at revision {rev}, behind head {head}: run `vision-pipeline db upgrade`")
    return Check(FAIL, "job-records", f"{shown} at revision {rev}, which this code does not know (written by newer "
                                      f"code?): deploy the code that matches it, or downgrade with that code to {head}")


# ------------------------------------------------------------------------------------------- Dagster


class _MissingEnv(Exception):
    pass


def _resolve_env(value: Any) -> Any:
    """dagster.yaml's ``{env: NAME}`` values, resolved from the environment."""
    if isinstance(value, Mapping):
        if set(value) == {"env"}:
            name = str(value["env"])
            if name not in os.environ:
                raise _MissingEnv(name)
            return os.environ[name]
        return {k: _resolve_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_env(v) for v in value]
    return value


def _pg_url(conf: Mapping[str, Any]) -> str:
    """The connection string dagster-postgres builds from ``postgres_url`` or ``postgres_db``."""
    if conf.get("postgres_url"):
        return str(conf["postgres_url"])
    db = conf.get("postgres_db")
    if not isinstance(db, Mapping) or not db.get("username"):
        raise ValueError("the postgres storage needs postgres_url or postgres_db with at least a username")
    userinfo = quote(str(db["username"])) + (f":{quote(str(db['password']))}" if db.get("password") else "")
    uri = (f"{db.get('scheme', 'postgresql')}://{userinfo}@{db.get('hostname', '')}:{db.get('port', 5432)}/"
           f"{db.get('db_name', '')}")
    if db.get("params"):
        uri += "?" + urlencode(db["params"], quote_via=quote)
    return uri


def _storage_of(cfg: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    storage = cfg.get("storage")
    if isinstance(storage, Mapping) and storage:
        kind = next(iter(storage))
        return str(kind), storage[kind] or {}
    for key in ("run_storage", "event_log_storage", "schedule_storage"):
        part = cfg.get(key)
        if isinstance(part, Mapping):
            module = str(part.get("module", "")) + "." + str(part.get("class", ""))
            for kind in ("postgres", "mysql", "sqlite"):
                if kind in module.lower():
                    return kind, part.get("config") or {}
            return "custom", part.get("config") or {}
    return "sqlite", {}


def _writable_dir(path: Path) -> bool:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK)


def check_dagster_storage(timeout: float = TIMEOUT) -> Check:
    raw = (os.environ.get("DAGSTER_HOME") or "").strip()
    if raw:
        # Resolved the way the CLI resolves it (vision_pipeline.instance.dagster_home).
        home, source = Path(raw).expanduser().resolve(), "DAGSTER_HOME"
        if not home.is_dir():
            return Check(FAIL, "dagster-storage", f"DAGSTER_HOME={home} does not exist: create it (mkdir -p {home}) "
                                                  "and put the production dagster.yaml in it")
    else:
        # The CLI's embedded instance; not created here (doctor changes nothing).
        home, source = settings.home() / "dagster", "embedded default, DAGSTER_HOME not set"
        if not home.is_dir():
            if not os.access(home.parent, os.W_OK):
                return Check(FAIL, "dagster-storage", f"{home} ({source}) cannot be created: {home.parent} is not "
                                                      "writable; fix it or set DAGSTER_HOME")
            return Check(OK, "dagster-storage", f"{home} ({source}): SQLite, created on the first run; set "
                                                "DAGSTER_HOME to a folder with a Postgres dagster.yaml for production")
    yaml_path = home / "dagster.yaml"
    if not yaml_path.exists():
        if not os.access(home, os.W_OK):
            return Check(FAIL, "dagster-storage", f"{home} ({source}) is not writable: fix its permissions")
        return Check(OK, "dagster-storage", f"{home} ({source}): no dagster.yaml, SQLite storage in {home / 'storage'}")
    import yaml

    try:
        cfg = yaml.safe_load(yaml_path.read_text()) or {}
        if not isinstance(cfg, Mapping):
            raise ValueError("the top level is not a mapping")
    except (OSError, ValueError, yaml.YAMLError) as exc:
        return Check(FAIL, "dagster-storage", f"{yaml_path} cannot be read ({_first_line(exc)}): fix the file")
    kind, conf = _storage_of(cfg)
    try:
        conf = _resolve_env(conf)
    except _MissingEnv as exc:
        return Check(FAIL, "dagster-storage", f"{yaml_path} reads {exc.args[0]} from the environment but it is not "
                                              f"set: export {exc.args[0]}")
    if kind == "sqlite":
        base = Path(str(conf.get("base_dir") or home / "storage")).expanduser()
        if not _writable_dir(base):
            return Check(FAIL, "dagster-storage", f"SQLite storage folder {base} is not writable: fix its permissions "
                                                  f"or base_dir in {yaml_path}")
        return Check(OK, "dagster-storage", f"{home} ({source}): SQLite storage in {base}")
    if kind != "postgres":
        return Check(SKIP, "dagster-storage", f"{kind} storage configured in {yaml_path}: not checked by doctor")
    try:
        url = _pg_url(conf)
    except ValueError as exc:
        return Check(FAIL, "dagster-storage", f"{yaml_path}: {exc}")
    return _check_dagster_postgres(url, yaml_path, timeout)


def _check_dagster_postgres(url: str, yaml_path: Path, timeout: float) -> Check:
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.engine import make_url

    from vision_pipeline.records.store import redact_url

    shown = redact_url(url)
    try:
        if make_url(url).get_backend_name() != "postgresql":
            return Check(FAIL, "dagster-storage", f"{yaml_path}: postgres storage URL {shown} is not a postgresql:// URL")
        engine = create_engine(url, connect_args={"connect_timeout": int(max(1, timeout))})
    except Exception as exc:  # noqa: BLE001
        return Check(FAIL, "dagster-storage", f"{yaml_path}: postgres storage URL {shown} is invalid ({_first_line(exc)})")
    try:
        t0 = time.perf_counter()
        with engine.connect() as conn:
            has_runs = inspect(conn).has_table("runs")
        ms = (time.perf_counter() - t0) * 1000
    except Exception as exc:  # noqa: BLE001
        text = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0] if str(exc) else type(exc).__name__
        low = text.lower()
        if "password authentication failed" in low or ("role" in low and "does not exist" in low):
            hint = "wrong user or password in its storage settings"
        elif "database" in low and "does not exist" in low:
            hint = "the database does not exist: create it (createdb)"
        else:
            hint = "start PostgreSQL or fix host/port in its storage settings"
        return Check(FAIL, "dagster-storage", f"postgres {shown} (from {yaml_path}): {hint} ({text})")
    finally:
        engine.dispose()
    state = "Dagster tables present" if has_runs else "empty: Dagster creates its tables on first start"
    return Check(OK, "dagster-storage", f"postgres {shown} (from {yaml_path}), {ms:.0f} ms, {state}")


# ------------------------------------------------------------------------------------------ artifacts


def check_artifacts(timeout: float = TIMEOUT) -> Check:
    from vision_pipeline.storage import StorageError, make_store, store_from_env

    env = os.environ

    def clean(name: str) -> str | None:
        return (env.get(name) or "").strip() or None

    try:
        if clean("VISION_PIPELINE_S3_BUCKET"):
            # store_from_env() with doctor's short timeouts and a single attempt.
            store = make_store(
                clean("VISION_PIPELINE_S3_BUCKET"), env.get("VISION_PIPELINE_S3_PREFIX", ""),
                clean("AWS_ENDPOINT_URL_S3") or clean("AWS_ENDPOINT_URL"),
                clean("AWS_REGION") or clean("AWS_DEFAULT_REGION"),
                clean("AWS_ACCESS_KEY_ID"), clean("AWS_SECRET_ACCESS_KEY"),
                session_token=clean("AWS_SESSION_TOKEN"),
                connect_timeout=timeout, read_timeout=timeout + 2, max_attempts=1,
            )
        else:
            store = store_from_env()
        text = store.check()
    except StorageError as exc:
        return Check(FAIL, "artifacts", str(exc))
    return Check(OK, "artifacts", text.removeprefix("ok: "))


# ------------------------------------------------------------------------------------------- driver


def run_checks(timeout: float = TIMEOUT) -> list[Check]:
    """All checks, concurrently; in a fixed order. A check that crashes becomes a FAIL line."""
    jobs: list[tuple[str, Callable[[], Any]]] = [
        ("clearml-api", lambda: check_clearml(timeout)),
        ("job-records", lambda: check_job_records(timeout)),
        ("dagster-storage", lambda: check_dagster_storage(timeout)),
        ("artifacts", lambda: check_artifacts(timeout)),
    ]
    out: list[Check] = []
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [(name, pool.submit(fn)) for name, fn in jobs]
        for name, future in futures:
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - doctor reports, never crashes
                result = Check(FAIL, name, f"the check itself failed ({type(exc).__name__}: {_first_line(exc)})")
            out.extend(result if isinstance(result, list) else [result])
    return out


def report(timeout: float = TIMEOUT) -> tuple[list[str], int]:
    """(lines to print, exit code): 0 when no check FAILed, else 1. Lines carry no secret."""
    checks = run_checks(timeout)
    secrets = secret_values()
    lines = [scrub(c.line(), secrets) for c in checks]
    failed = [c for c in checks if c.status == FAIL]
    lines.append(f"{len(failed)} of {len(checks)} checks failed" if failed else f"all {len(checks)} checks passed "
                 f"({sum(c.status == SKIP for c in checks)} skipped)")
    return lines, 1 if failed else 0
