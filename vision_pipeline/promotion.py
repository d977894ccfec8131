"""The promotion gate: does a newly trained model replace the production model?

Plain Python (no Dagster): the ``production_model`` asset calls :func:`promote` and
:func:`publish_decision`; a CLI or a notebook could too.

Rules
-----
* The first model (no production model yet) is promoted.
* Otherwise the production checkpoint and the new one are evaluated on the *same* validation split
  (the new dataset's): the new model is promoted unless its mAP50 is lower than production's by more
  than ``tolerance`` (absolute mAP50, in [0, 1]; ``VISION_PIPELINE_PROMOTION_TOLERANCE``, default 0.02).
* A production checkpoint that predicts other classes than the new dataset has cannot be compared
  there: the new model is promoted on its own quality gate, and the reason says so.
* A rejected model stays where it is (artifact store, ClearML); only the decision and its reason are
  recorded.

Records
-------
``model_promotions`` holds one row per training job (``training_job_id`` is UNIQUE). Deciding again for
the same job — a retried Dagster step, a re-materialisation — updates that row instead of adding one,
and a job that already *is* production is left as it is. Promoting retires the previous production row
(``is_current=False``, ``retired_at``) in the same transaction, after checking that production did not
change while the models were being evaluated, so there is never more than one current row.

ClearML
-------
Every decision is a small ClearML task ``Promotion Job {row id} - training job {id} {decision}`` (type
``qc``) whose user properties and console text carry the decision, the reason, both mAP50 values and
the tolerance. Online, the training task and its best model are also tagged ``production`` (the
model is published) and the replaced ones lose the tag. Offline, a closed session cannot be changed:
the decision task is an offline session like any other, and the production tag is carried by the
database row — ``vision-pipeline clearml sync`` tags the imported training task and model
``production`` for every current promotion row that names the offline task (``tracking/sync.py``).
"""

from __future__ import annotations

import datetime as dt
import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

from sqlalchemy import select

from vision_pipeline.records.models import ModelPromotion
from vision_pipeline.records.store import JobStore
from vision_pipeline.tracking import ClearMLTracker

PRODUCTION_TAG = "production"
DEFAULT_TOLERANCE = 0.02
TOLERANCE_ENV = "VISION_PIPELINE_PROMOTION_TOLERANCE"
PROMOTED, REJECTED = "promoted", "rejected"


class PromotionError(RuntimeError):
    """The gate cannot decide (bad setting, production changed meanwhile, unreadable baseline)."""


class PromotionSettingsError(PromotionError, ValueError):
    """A promotion setting is out of range or not a number (names the variable and the value)."""


def validate_tolerance(value: Any, *, source: str = "tolerance") -> float:
    try:
        tolerance = float(value)
    except (TypeError, ValueError):
        raise PromotionSettingsError(
            f"{source}={value!r} is not a number: the promotion tolerance is an absolute mAP50 difference in [0, 1], "
            f"e.g. {DEFAULT_TOLERANCE}"
        ) from None
    if not (0.0 <= tolerance <= 1.0):
        raise PromotionSettingsError(
            f"{source}={value!r} is outside [0, 1]: the promotion tolerance is an absolute mAP50 difference "
            f"(0.02 = two points of mAP50); nothing is promoted until it is fixed"
        )
    return tolerance


def promotion_tolerance(env: Mapping[str, str] | None = None) -> float:
    """``VISION_PIPELINE_PROMOTION_TOLERANCE`` (default 0.02), read at call time."""
    env = os.environ if env is None else env
    raw = (env.get(TOLERANCE_ENV) or "").strip()
    return DEFAULT_TOLERANCE if not raw else validate_tolerance(raw, source=TOLERANCE_ENV)


# ------------------------------------------------------------------------------------- the decision


@dataclass(frozen=True)
class GateDecision:
    decision: str  # promoted | rejected
    reason: str
    map50: float
    baseline_map50: float | None
    baseline_training_job_id: int | None
    tolerance: float

    @property
    def promoted(self) -> bool:
        return self.decision == PROMOTED


def decide(
    map50: float,
    baseline_map50: float | None,
    tolerance: float,
    *,
    baseline_training_job_id: int | None = None,
    incomparable: str | None = None,
) -> GateDecision:
    """The gate itself. ``baseline_map50=None``: no production model yet (or ``incomparable`` says why not)."""
    tolerance = validate_tolerance(tolerance)
    if not math.isfinite(map50):
        raise PromotionError(f"the new model's mAP50 is {map50}: cannot decide")
    if baseline_map50 is None:
        if incomparable:
            reason = (f"no comparable baseline: {incomparable}; promoted on the training quality gate alone "
                      f"(mAP50 {map50:.4f})")
        else:
            reason = f"first model: there is no production model to compare with (mAP50 {map50:.4f})"
        return GateDecision(PROMOTED, reason, map50, None, baseline_training_job_id, tolerance)
    delta = map50 - baseline_map50
    versus = (f"mAP50 {map50:.4f} vs production (training job {baseline_training_job_id}) {baseline_map50:.4f} "
              f"on the same validation split: {delta:+.4f}")
    if delta < -tolerance:
        return GateDecision(REJECTED, f"{versus}, a regression beyond the tolerance of {tolerance:.4f}; "
                            "production is unchanged", map50, baseline_map50, baseline_training_job_id, tolerance)
    word = "better" if delta > 0 else ("equal" if delta == 0 else "within the tolerance")
    return GateDecision(PROMOTED, f"{versus} ({word}; tolerance {tolerance:.4f})",
                        map50, baseline_map50, baseline_training_job_id, tolerance)


# ------------------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class PromotionRecord:
    """A ``model_promotions`` row as plain data (datetimes as aware UTC)."""

    id: int
    training_job_id: int
    decision: str
    reason: str | None
    is_current: bool
    clearml_task_id: str | None
    clearml_model_id: str | None
    dataset_hash: str | None
    map50: float | None
    baseline_map50: float | None
    replaces_training_job_id: int | None
    dagster_run_id: str | None
    decided_at: dt.datetime
    retired_at: dt.datetime | None

    @classmethod
    def of(cls, row: ModelPromotion) -> "PromotionRecord":
        return cls(**{c.key: _aware(getattr(row, c.key)) for c in ModelPromotion.__table__.columns})

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("decided_at", "retired_at"):
            out[key] = out[key].isoformat() if out[key] else None
        return out


def _aware(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)  # SQLite hands back naive UTC
    return value


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def current_production(store: JobStore) -> PromotionRecord | None:
    """The promotion row that is production now, or None before the first promotion."""
    with store.session() as s:
        row = s.scalars(select(ModelPromotion).where(ModelPromotion.is_current.is_(True))
                        .order_by(ModelPromotion.decided_at.desc(), ModelPromotion.id.desc())).first()
        return PromotionRecord.of(row) if row else None


def get_promotion(store: JobStore, training_job_id: int) -> PromotionRecord | None:
    with store.session() as s:
        row = s.scalars(select(ModelPromotion).where(ModelPromotion.training_job_id == training_job_id)).first()
        return PromotionRecord.of(row) if row else None


def list_promotions(store: JobStore) -> list[PromotionRecord]:
    with store.session() as s:
        return [PromotionRecord.of(r) for r in s.scalars(select(ModelPromotion).order_by(ModelPromotion.id))]


@dataclass(frozen=True)
class Candidate:
    """The newly trained model, as the promotion records need it."""

    training_job_id: int
    dataset_hash: str | None = None
    clearml_task_id: str | None = None  # the training task (what `clearml sync` tags 'production')
    clearml_model_id: str | None = None  # its registered best model
    dagster_run_id: str | None = None


def record_decision(
    store: JobStore,
    candidate: Candidate,
    decision: GateDecision,
    *,
    expected_production_job_id: int | None,
) -> tuple[PromotionRecord, PromotionRecord | None]:
    """Upsert the candidate's row; when promoted, make it the only current row. Returns (row, retired row).

    ``expected_production_job_id`` is the production job the decision was made against: if another
    promotion happened meanwhile, :class:`PromotionError` is raised and nothing changes (decide again).
    """
    now = _now()
    with store.session() as s:
        current = s.scalars(
            select(ModelPromotion).where(ModelPromotion.is_current.is_(True),
                                         ModelPromotion.training_job_id != candidate.training_job_id)
            .with_for_update()
        ).all()
        current_ids = sorted(r.training_job_id for r in current)
        expected = [] if expected_production_job_id is None else [expected_production_job_id]
        if current_ids != expected:
            raise PromotionError(
                f"production changed while training job {candidate.training_job_id} was being evaluated "
                f"(expected {expected or 'none'}, now {current_ids or 'none'}): run the promotion again"
            )
        row = s.scalars(select(ModelPromotion).where(ModelPromotion.training_job_id == candidate.training_job_id)
                        .with_for_update()).first()
        if row is None:
            row = ModelPromotion(training_job_id=candidate.training_job_id)
            s.add(row)
        row.decision = decision.decision
        row.reason = decision.reason
        row.map50 = decision.map50
        row.baseline_map50 = decision.baseline_map50
        row.clearml_task_id = candidate.clearml_task_id
        row.clearml_model_id = candidate.clearml_model_id
        row.dataset_hash = candidate.dataset_hash
        row.dagster_run_id = candidate.dagster_run_id
        row.decided_at = now
        retired = None
        if decision.promoted:
            row.is_current = True
            row.retired_at = None
            row.replaces_training_job_id = expected_production_job_id
            for old in current:
                old.is_current = False
                old.retired_at = now
                retired = old
        else:
            row.is_current = False
            row.replaces_training_job_id = None
        s.flush()
        return PromotionRecord.of(row), (PromotionRecord.of(retired) if retired else None)


@dataclass(frozen=True)
class PromotionOutcome:
    record: PromotionRecord  # the candidate's row after the decision
    decision: GateDecision
    production: PromotionRecord  # what is production now (the candidate, or the unchanged previous one)
    retired: PromotionRecord | None  # the row the candidate replaced, if it was promoted now
    already_production: bool  # a retry: the candidate was production already, nothing changed


def promote(
    store: JobStore,
    candidate: Candidate,
    *,
    tolerance: float,
    evaluate_candidate: Callable[[], float],
    evaluate_baseline: Callable[[PromotionRecord], float],
) -> PromotionOutcome:
    """Decide and record. The evaluators run outside any transaction (they take seconds to minutes).

    ``evaluate_baseline(production_row)`` returns the production model's mAP50 on the candidate's
    validation split; it may raise ``IncompatibleModelError`` (other classes: no comparable baseline).
    """
    from vision_pipeline.vision.evaluate import IncompatibleModelError

    tolerance = validate_tolerance(tolerance)
    existing = get_promotion(store, candidate.training_job_id)
    if existing is not None and existing.is_current:
        decision = GateDecision(PROMOTED, existing.reason or "", existing.map50 or 0.0, existing.baseline_map50,
                                existing.replaces_training_job_id, tolerance)
        return PromotionOutcome(existing, decision, existing, None, already_production=True)
    production = current_production(store)
    map50 = float(evaluate_candidate())
    if production is None:
        decision = decide(map50, None, tolerance)
    else:
        try:
            baseline = float(evaluate_baseline(production))
        except IncompatibleModelError as exc:
            decision = decide(map50, None, tolerance, baseline_training_job_id=production.training_job_id,
                              incomparable=f"production (training job {production.training_job_id}): {exc}")
        else:
            decision = decide(map50, baseline, tolerance, baseline_training_job_id=production.training_job_id)
    record, retired = record_decision(
        store, candidate, decision,
        expected_production_job_id=production.training_job_id if production else None,
    )
    return PromotionOutcome(record, decision, record if decision.promoted else production, retired,
                            already_production=False)


# ------------------------------------------------------------------------------------------ ClearML


@dataclass(frozen=True)
class PublishedDecision:
    task_id: str
    task_url: str
    tagged_online: bool  # training task/model tagged 'production' on the server now (False offline)


def publish_decision(
    tracker: ClearMLTracker,
    outcome: PromotionOutcome,
    *,
    extra_properties: Mapping[str, Any] | None = None,
) -> PublishedDecision:
    """The decision as a ClearML task (always); online also the ``production`` tags (see the module doc)."""
    rec, decision = outcome.record, outcome.decision
    word = "already production" if outcome.already_production else decision.decision
    name = f"Promotion Job {rec.id} - training job {rec.training_job_id} {word}"
    tags = ["promotion", decision.decision, f"training-job:{rec.training_job_id}"]
    props = {
        "decision": decision.decision,
        "reason": decision.reason,
        "training_job_id": rec.training_job_id,
        "training_task_id": rec.clearml_task_id or "",
        "training_model_id": rec.clearml_model_id or "",
        "mAP50": f"{decision.map50:.6f}",
        "baseline_mAP50": "" if decision.baseline_map50 is None else f"{decision.baseline_map50:.6f}",
        "tolerance": f"{decision.tolerance:.6f}",
        "production_training_job_id": outcome.production.training_job_id,
        "replaces_training_job_id": rec.replaces_training_job_id or "",
        "dataset_hash": rec.dataset_hash or "",
        "decided_at": rec.decided_at.isoformat(),
        "already_production": outcome.already_production,
        **dict(extra_properties or {}),
    }
    tagged = False
    with tracker.task(name, "qc", tags=tags) as task:
        task.set_properties(**props)
        task.log_text(f"{decision.decision.upper()}: {decision.reason}")
        task.log_scalar("mAP50", "candidate", decision.map50, 0)
        if decision.baseline_map50 is not None:
            task.log_scalar("mAP50", "production", decision.baseline_map50, 0)
        if not tracker.offline and decision.promoted:
            _tag_online(tracker, rec, outcome.retired)
            tagged = True
        return PublishedDecision(task.id, task.url, tagged)


def _tag_online(tracker: ClearMLTracker, rec: PromotionRecord, retired: PromotionRecord | None) -> None:
    """Server side: tag (and publish) the production model, untag the one it replaced. Idempotent."""
    Task = tracker._prepare_sdk()
    from clearml import Model

    if rec.clearml_task_id and not rec.clearml_task_id.startswith("offline-"):
        Task.get_task(task_id=rec.clearml_task_id).add_tags([PRODUCTION_TAG])
    if rec.clearml_model_id and not rec.clearml_model_id.startswith("offline-"):
        model = Model(model_id=rec.clearml_model_id)
        model.tags = sorted({*(model.tags or []), PRODUCTION_TAG})
        if not model.published:
            model.publish()
    if retired is not None:
        if retired.clearml_task_id and not retired.clearml_task_id.startswith("offline-"):
            old = Task.get_task(task_id=retired.clearml_task_id)
            old.set_tags([t for t in (old.get_tags() or []) if t != PRODUCTION_TAG])
        if retired.clearml_model_id and not retired.clearml_model_id.startswith("offline-"):
            old_model = Model(model_id=retired.clearml_model_id)
            old_model.tags = [t for t in (old_model.tags or []) if t != PRODUCTION_TAG]
