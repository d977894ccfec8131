"""Jobs, sensors and schedules: retrain when the data changes (sensor) or on a timetable (schedule).

* ``retrain_job`` — dataset → trained_checkpoint → exported_model → inference_outputs → production_model,
  with every check.
* ``retrain_sensor`` — watches ``VISION_PIPELINE_WATCH_DIR`` (a YOLO dataset folder) with a per-directory
  cursor (``vision_pipeline.watch``) and requests ``retrain_job`` on that folder. ``run_key`` = the data
  version the training would get (:func:`run_key_for`: the dataset's content hash + the default training
  recipe + the training code version), so the same content is never launched twice (not even after a
  revert), while a changed recipe or code version does count as new.
* ``retrain_schedule`` — ``VISION_PIPELINE_RETRAIN_CRON`` (default ``0 3 * * 1``, Mondays 03:00 UTC), on
  when ``VISION_PIPELINE_SCHEDULE_ENABLED=1`` (the production deployment), off otherwise.

Both skip, with the reason on the tick, when the production model was trained on the same data with the
same recipe (same data version), when a run for that data version already exists or is in progress, or when the last retrain
started less than ``VISION_PIPELINE_MIN_RETRAIN_INTERVAL_S`` (default 3600) ago. A manual launch of the
job (launchpad, ``dagster job execute``) is not gated: it always retrains.

Settings are read at tick time (``WatchSettings.from_env``, ``promotion_tolerance``), except those Dagster
needs when the definitions load: the cron string and the schedule's default status
(:func:`schedule_settings_from_env`, called by ``build_retrain_schedule``) and the sensor's default status
(:func:`sensor_default_status_from_env`: running when ``VISION_PIPELINE_WATCH_DIR`` is set). A cron string
that does not parse stops the code location from loading with a message naming the variable; every other
bad setting (a tolerance outside [0, 1], a missing or unreadable folder, a negative interval) makes the
ticks skip with the reason, and nothing is requested or promoted.
"""


import datetime as dt
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import dagster as dg
from dagster._utils.schedules import is_valid_cron_string

from vision_pipeline import settings
from vision_pipeline.defs.resources import JobRecordsResource
from vision_pipeline.defs.promotion import production_fingerprint
from vision_pipeline.defs.training import TrainingConfig, training_fingerprint
from vision_pipeline.promotion import PromotionError, current_production, promotion_tolerance
from vision_pipeline.records.errors import RecordsError
from vision_pipeline.vision.dataset import content_hash
from vision_pipeline.vision.errors import VisionInputError
from vision_pipeline.watch import WatchCursor, WatchError, WatchSettings, WatchSettingsError, scan

RETRAIN_ASSETS = ("dataset", "trained_checkpoint", "exported_model", "inference_outputs", "production_model")
TAG_TRIGGER = "vision_pipeline/trigger"
TAG_DATASET_HASH = "vision_pipeline/dataset_hash"
TAG_RUN_KEY = "vision_pipeline/training_fingerprint"
DEFAULT_CRON = "0 3 * * 1"
SENSOR_INTERVAL_S = 30
_IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING,
]

# dataset -> trained_checkpoint -> exported_model -> inference_outputs -> production_model, with their checks.
retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=dg.AssetSelection.assets(*RETRAIN_ASSETS),
    description="The whole pipeline: dataset, training, export (with parity), inference, promotion gate.",
)


class AutomationSettingsError(ValueError):
    """A schedule setting from the environment is not usable (names the variable and how to fix it)."""


# ------------------------------------------------------------------------------- shared decision


def _ago(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


def _parse_time(value: Any) -> Optional[float]:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.timestamp()


def run_key_for(dataset_hash: str) -> str:
    """The ``trained_checkpoint`` data version a sensor/schedule run on ``dataset_hash`` would produce.

    Their runs set only the dataset source, so training uses the default recipe (``TrainingConfig()``).
    """
    return training_fingerprint(dataset_hash, TrainingConfig().model_dump())


def retrain_blocker(
    instance: dg.DagsterInstance,
    job_records: JobRecordsResource,
    dataset_hash: str,
    *,
    min_interval_s: float,
    now: float,
    last_request_at: Optional[float] = None,
) -> tuple[Optional[str], bool]:
    """Why not to retrain on ``dataset_hash`` now, or None. Second value: look again later (True) or only
    after the next change (False)."""
    short = dataset_hash[:12]
    try:
        production = current_production(job_records.store())
    except RecordsError as exc:
        return f"cannot read the production model from the job records ({exc}); nothing requested", True
    if production is not None and production.dataset_hash == dataset_hash:
        ours = run_key_for(dataset_hash)
        theirs = production_fingerprint(instance, job_records, production.training_job_id)
        if theirs is None or theirs == ours:
            return (f"dataset content {short} and the training recipe are the ones the production model (training "
                    f"job {production.training_job_id}, production since {production.decided_at:%Y-%m-%d %H:%M} "
                    "UTC) was trained with: not retraining (launch retrain_job by hand to force it)"), False
        # Same data, another recipe (defaults or TRAINING_CODE_VERSION changed): a retrain is a new model.
    for run in instance.get_runs(filters=dg.RunsFilter(tags={TAG_RUN_KEY: run_key_for(dataset_hash)}), limit=5):
        if run.status in _IN_FLIGHT or run.status == dg.DagsterRunStatus.SUCCESS:
            return (f"run {run.run_id[:8]} ({run.status.value.lower()}) already retrained on dataset content "
                    f"{short} with this recipe: not launching it twice"), False
    in_flight = instance.get_runs(filters=dg.RunsFilter(job_name=retrain_job.name, statuses=_IN_FLIGHT), limit=1)
    if in_flight:
        return (f"retrain run {in_flight[0].run_id[:8]} is {in_flight[0].status.value.lower()}: waiting for it "
                f"before retraining on dataset content {short}"), True
    if min_interval_s > 0:
        try:
            latest = job_records.store().list_jobs("training", limit=1)
        except RecordsError as exc:
            return f"cannot read the job records ({exc}); nothing requested", True
        starts = [t for t in (_parse_time(latest[0]["created_at"]) if latest else None, last_request_at) if t]
        if starts:
            since = now - max(starts)
            if since < min_interval_s:
                return (f"the last retrain started {_ago(since)} ago; VISION_PIPELINE_MIN_RETRAIN_INTERVAL_S="
                        f"{min_interval_s:g}, so retraining on dataset content {short} waits "
                        f"{_ago(min_interval_s - since)} more"), True
    return None, False


# ----------------------------------------------------------------------------------------- sensor


def sensor_default_status_from_env() -> dg.DefaultSensorStatus:
    """Read when the definitions load: the sensor runs by default once a folder to watch is configured."""
    return dg.DefaultSensorStatus.RUNNING if os.environ.get("VISION_PIPELINE_WATCH_DIR") else dg.DefaultSensorStatus.STOPPED


@dataclass
class SensorCursor:
    """The sensor's cursor: the folder's per-directory state plus what was decided last."""

    watch: Optional[dict[str, Any]] = None  # WatchCursor.to_dict()
    pending: bool = False  # a change was seen but not acted on yet (interval, run in flight, unreadable file)
    last_run_key: Optional[str] = None  # run key (data version) of the last requested run
    last_request_at: Optional[float] = None
    pending_hash: Optional[str] = None  # content hash of the pending change, when it could be computed
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v not in (None, {}, False)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: Optional[str]) -> "SensorCursor":
        try:
            raw = json.loads(text) if text else {}
            return cls(watch=raw.get("watch"), pending=bool(raw.get("pending")), last_run_key=raw.get("last_run_key"),
                       last_request_at=raw.get("last_request_at"), pending_hash=raw.get("pending_hash"),
                       extra=raw.get("extra") or {})
        except (ValueError, AttributeError, TypeError):
            return cls()  # unreadable (an older format): start with a full scan


def _skip(reason: str, cursor: Optional[SensorCursor] = None) -> dg.SensorResult:
    """Skip with ``reason``; ``cursor=None`` keeps the stored cursor as it is."""
    return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=cursor.to_json() if cursor else None)


def dataset_run_config(source: Optional[Path]) -> dict[str, Any]:
    return {"ops": {"dataset": {"config": {"source": str(source)}}}} if source else {}


@dg.sensor(
    job=retrain_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=sensor_default_status_from_env(),
    description="Retrains when the image/label files under VISION_PIPELINE_WATCH_DIR change (new, changed, "
    "removed). One run per distinct dataset content and recipe (run_key = the training data version); none "
    "when production was trained on the same, while a retrain runs, or within VISION_PIPELINE_MIN_RETRAIN_INTERVAL_S of the "
    "last one. Running by default when VISION_PIPELINE_WATCH_DIR is set when the definitions load.",
)
def retrain_sensor(context: dg.SensorEvaluationContext, job_records: JobRecordsResource) -> dg.SensorResult:
    state = SensorCursor.from_json(context.cursor)
    try:
        watch = WatchSettings.from_env()
        promotion_tolerance()  # a model trained now could not be promoted: say so instead of training
    except (WatchSettingsError, PromotionError) as exc:
        return _skip(f"not watching: {exc}")
    if watch.folder is None:
        return _skip("no folder is watched: set VISION_PIPELINE_WATCH_DIR to a YOLO dataset folder (data.yaml, "
                     "images/, labels/) to retrain when it changes; the retrain schedule works without it")
    folder = watch.folder
    previous = WatchCursor.from_dict(state.watch)
    try:
        result = scan(folder, previous, settle_s=watch.settle_s, full_scan_s=watch.full_scan_s)
    except WatchError as exc:
        return _skip(f"{exc}; nothing requested, looking again next tick")
    if result.settling:
        return _skip(f"{folder}: {result.settling_text(watch.settle_s)}")  # old cursor: the same folders again
    if not result.changed and not state.pending:
        if result.full_scan:  # nothing changed, but remember when the last full scan was
            state.watch = result.cursor.to_dict()
            return _skip(f"{folder}: {result.describe()}", state)
        return _skip(f"{folder}: {result.describe()}")
    state.watch = result.cursor.to_dict()
    if result.changed:
        context.log.info(f"{folder}: {result.describe()}")
    if not result.changed and state.pending_hash:
        new_hash = state.pending_hash  # nothing changed since it was hashed: do not read every byte again
    else:
        state.pending_hash = None
        try:
            new_hash = content_hash(folder)
        except VisionInputError as exc:
            state.pending = False  # wait for the next change: the fix will be one
            return _skip(f"{folder} changed but is not a usable YOLO dataset: {exc}; waiting for the next change",
                         state)
        except OSError as exc:
            state.pending = True  # e.g. permission denied: a chmod does not change mtimes, so look again next tick
            what = "permission denied reading" if isinstance(exc, PermissionError) else "cannot read"
            return _skip(f"{folder} changed but its content cannot be hashed: {what} {exc.filename or folder} "
                         f"({exc.strerror or exc}); nothing requested, trying again next tick", state)
    run_key = run_key_for(new_hash)
    if run_key == state.last_run_key:
        state.pending, state.pending_hash = False, None
        return _skip(f"dataset content {new_hash[:12]} is unchanged since the run requested for it "
                     f"(files touched or changed back): not launching it twice", state)
    now = time.time()
    reason, retry = retrain_blocker(context.instance, job_records, new_hash, min_interval_s=watch.min_retrain_interval_s,
                                    now=now, last_request_at=state.last_request_at)
    if reason:
        state.pending = retry
        state.pending_hash = new_hash if retry else None
        return _skip(reason, state)
    state.pending, state.pending_hash, state.last_run_key, state.last_request_at = False, None, run_key, now
    return dg.SensorResult(
        run_requests=[dg.RunRequest(
            run_key=run_key,
            run_config=dataset_run_config(folder),
            tags={TAG_TRIGGER: "sensor", TAG_DATASET_HASH: new_hash, TAG_RUN_KEY: run_key},
        )],
        cursor=state.to_json(),
    )


# --------------------------------------------------------------------------------------- schedule


@dataclass(frozen=True)
class ScheduleSettings:
    cron: str = DEFAULT_CRON
    enabled: bool = False


def validate_cron(cron: str, *, source: str = "VISION_PIPELINE_RETRAIN_CRON") -> str:
    text = " ".join(str(cron or "").split())
    if not text or not is_valid_cron_string(text):
        raise AutomationSettingsError(
            f"{source}={cron!r} is not a valid cron expression: use five fields 'minute hour day-of-month month "
            f"day-of-week', e.g. {DEFAULT_CRON!r} (Mondays 03:00 UTC) or '@weekly'"
        )
    return text


def schedule_settings_from_env(env: Optional[Mapping[str, str]] = None) -> ScheduleSettings:
    """``VISION_PIPELINE_RETRAIN_CRON`` and ``VISION_PIPELINE_SCHEDULE_ENABLED``, read when the definitions load.

    Dagster needs both then (a schedule's cron string and default status are part of its definition);
    changing them needs a reload of the code location. Raises :class:`AutomationSettingsError`.
    """
    env = os.environ if env is None else env
    cron = validate_cron(env.get("VISION_PIPELINE_RETRAIN_CRON") or DEFAULT_CRON)
    raw = (env.get("VISION_PIPELINE_SCHEDULE_ENABLED") or "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        enabled = False
    elif raw in ("1", "true", "yes", "on"):
        enabled = True
    else:
        raise AutomationSettingsError(
            f"VISION_PIPELINE_SCHEDULE_ENABLED={raw!r}: use 1 (schedule running by default) or 0 (stopped)")
    return ScheduleSettings(cron=cron, enabled=enabled)


def synthetic_dataset_hash(config: Optional[Any] = None) -> str:
    """Content hash of the synthetic dataset a run without a source trains on (``DatasetConfig()`` defaults).

    The generator is deterministic, so this equals the ``content_hash`` the ``dataset`` asset records;
    it costs one generation (a few seconds), once per schedule tick.
    """
    from vision_pipeline.defs.dataset import DatasetConfig
    from vision_pipeline.vision.synthetic import generate_synthetic_dataset

    cfg = config or DatasetConfig()
    scratch = settings.work_dir() / "schedule"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        root = Path(tmp) / "synthetic"
        generate_synthetic_dataset(root, n_train=cfg.synthetic_train_images, n_val=cfg.synthetic_val_images,
                                   imgsz=cfg.synthetic_imgsz, seed=cfg.seed)
        return content_hash(root)


def _schedule_tick(context: dg.ScheduleEvaluationContext, job_records: JobRecordsResource):
    try:
        watch = WatchSettings.from_env()
        promotion_tolerance()
    except (WatchSettingsError, PromotionError) as exc:
        return dg.SkipReason(f"not retraining: {exc}")
    source = watch.folder
    try:
        new_hash = content_hash(source) if source else synthetic_dataset_hash()
    except VisionInputError as exc:
        return dg.SkipReason(f"the dataset is not usable: {exc}")
    except OSError as exc:
        return dg.SkipReason(f"cannot read the dataset {exc.filename or source}: {exc.strerror or exc}")
    reason, _ = retrain_blocker(context.instance, job_records, new_hash,
                                min_interval_s=watch.min_retrain_interval_s, now=time.time())
    if reason:
        return dg.SkipReason(reason)
    return dg.RunRequest(
        run_key=run_key_for(new_hash),
        run_config=dataset_run_config(source),
        tags={TAG_TRIGGER: "schedule", TAG_DATASET_HASH: new_hash, TAG_RUN_KEY: run_key_for(new_hash)},
    )


def build_retrain_schedule(schedule_settings: Optional[ScheduleSettings] = None) -> dg.ScheduleDefinition:
    """The retrain schedule; ``schedule_settings`` defaults to :func:`schedule_settings_from_env`."""
    s = schedule_settings or schedule_settings_from_env()
    validate_cron(s.cron, source="cron")

    @dg.schedule(
        name="retrain_schedule",
        cron_schedule=s.cron,
        job=retrain_job,
        default_status=dg.DefaultScheduleStatus.RUNNING if s.enabled else dg.DefaultScheduleStatus.STOPPED,
        description=f"Retrains on '{s.cron}' (UTC; VISION_PIPELINE_RETRAIN_CRON) from VISION_PIPELINE_WATCH_DIR, or "
        "the synthetic dataset when no folder is set. Skips when production was trained on the same content, when "
        "a run for it exists, or within the minimum retrain interval. Off unless VISION_PIPELINE_SCHEDULE_ENABLED=1.",
    )
    def retrain_schedule(context: dg.ScheduleEvaluationContext, job_records: JobRecordsResource):
        return _schedule_tick(context, job_records)

    return retrain_schedule


retrain_schedule = build_retrain_schedule()

jobs = [retrain_job]
sensors: list = [retrain_sensor]
schedules: list = [retrain_schedule]
