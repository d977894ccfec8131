"""Train an ultralytics YOLO detector on a YOLO-format dataset, reporting every epoch.

Plain Python: no Dagster, no ClearML. The caller gets one :class:`EpochReport` per epoch through
``on_epoch`` and logs it wherever it wants (the project logs to ClearML itself), so every
ultralytics integration callback (ClearML, MLflow, Comet, DVC, Ray Tune, TensorBoard, W&B,
Ultralytics Platform, analytics events) is switched off for the runs started here.

Nothing is downloaded: a model is either a YAML architecture (bundled with ultralytics or a local
file, trained from scratch) or a local ``.pt`` checkpoint, see :func:`resolve_model`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vision_pipeline.settings import configure_ultralytics
from vision_pipeline.vision.errors import VisionInputError

if TYPE_CHECKING:  # ultralytics is imported lazily, after configure_ultralytics()
    from ultralytics.engine.trainer import BaseTrainer

# The project's ``{series}_{title}`` metric keys, in reporting order.
EPOCH_METRIC_KEYS: tuple[str, ...] = (
    "train_box_loss",
    "train_cls_loss",
    "train_dfl_loss",
    "val_box_loss",
    "val_cls_loss",
    "val_dfl_loss",
    "val_mAP50",
    "val_mAP50-95",
    "val_precision",
    "val_recall",
    "lr_pg0",
    "lr_pg1",
    "lr_pg2",
)
FINAL_METRIC_KEYS: tuple[str, ...] = ("mAP50", "mAP50-95", "precision", "recall")

# ultralytics' detection metric names -> ours.
_BOX_METRICS = {
    "metrics/mAP50(B)": "mAP50",
    "metrics/mAP50-95(B)": "mAP50-95",
    "metrics/precision(B)": "precision",
    "metrics/recall(B)": "recall",
}
# Settings keys of ultralytics' optional integrations (each one, when True, adds its trainer callbacks).
_INTEGRATION_SETTINGS = ("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb")
# Heads of the plain YOLO detectors; others need another task, another model class or text encoders
# (YOLO-World / YOLOE would download CLIP weights).
_DETECTION_HEADS = frozenset({"Detect", "v10Detect"})
# Arguments train() sets itself; TrainConfig.extra may not override them.
_RESERVED_ARGS = frozenset(
    {"data", "model", "project", "name", "exist_ok", "plots", "verbose", "val", "amp", "resume", "save", "mode"}
)


@dataclass
class TrainConfig:
    """Training hyper-parameters; the defaults are the project's recipe for the default synthetic dataset.

    Default recipe: yolo11n from scratch at 96 px (the 128 px synthetic images downscaled; objects stay
    >= 14 px), 18 epochs, batch 16 without gradient accumulation (``nbs=None`` means ``nbs=batch``, so
    every batch is an optimizer step: 20 steps/epoch on 320 images instead of ultralytics' 5), AdamW
    at lr0 0.002 decaying linearly to 5 %, one warm-up epoch in which biases start at ultralytics'
    ``warmup_bias_lr`` 0.1 (it moves the classification prior, initialised for 640 px images, quickly;
    without it some seeds stall near mAP50 0.5), mosaic off and scale augmentation 0.25 (the val
    images come from the same generator). On ``generate_synthetic_dataset(dest)`` it reached mAP50
    0.95-0.98 on val for seeds 0, 1 and 2, in about 2 minutes on one core.

    ``model``: a model YAML bundled with ultralytics (``yolo11n.yaml``: architecture + scale), a path
    to a YAML, or a local ``.pt`` checkpoint to fine-tune (see :func:`resolve_model`). ``threads``:
    torch CPU threads while training on the CPU; ``None`` keeps ultralytics' choice (``cpu_count - 1``,
    at least 1), which leaves a core free and avoids OpenMP oversubscription on a shared machine.
    ``amp``: mixed precision on a GPU; off by default because ultralytics' AMP check loads
    ``yolo26n.pt`` and downloads it when missing (never used on the CPU).
    ``extra``: further ultralytics train arguments (e.g. ``{"fliplr": 0.0}``), passed through.
    """

    model: str = "yolo11n.yaml"
    epochs: int = 18
    imgsz: int = 96
    batch: int = 16
    nbs: int | None = None
    device: str = "cpu"
    seed: int = 0
    optimizer: str = "AdamW"
    lr0: float = 0.002
    lrf: float = 0.05
    cos_lr: bool = False
    momentum: float = 0.9
    weight_decay: float = 0.0005
    warmup_epochs: float = 1.0
    warmup_bias_lr: float = 0.1
    patience: int = 100
    workers: int = 0
    mosaic: float = 0.0
    close_mosaic: int = 0
    scale: float = 0.25
    amp: bool = False
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable copy of the fields."""
        return asdict(self)

    def train_args(self) -> dict[str, Any]:
        """The keyword arguments handed to ``YOLO.train`` (without the run-location ones)."""
        reserved = sorted(_RESERVED_ARGS.intersection(self.extra))
        if reserved:
            raise VisionInputError(f"TrainConfig.extra may not set {reserved}: train() controls them")
        if self.epochs < 1:
            raise VisionInputError(f"epochs must be >= 1; got {self.epochs}")
        if self.batch < 1:
            raise VisionInputError(f"batch must be >= 1; got {self.batch}")
        if self.imgsz < 32:
            raise VisionInputError(f"imgsz must be >= 32; got {self.imgsz}")
        if self.threads is not None and self.threads < 1:
            raise VisionInputError(f"threads must be >= 1 or None; got {self.threads}")
        args = {
            "epochs": self.epochs,
            "imgsz": self.imgsz,
            "batch": self.batch,
            "nbs": self.nbs or self.batch,
            "device": self.device,
            "seed": self.seed,
            "optimizer": self.optimizer,
            "lr0": self.lr0,
            "lrf": self.lrf,
            "cos_lr": self.cos_lr,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "warmup_epochs": self.warmup_epochs,
            "warmup_bias_lr": self.warmup_bias_lr,
            "patience": self.patience,
            "workers": self.workers,
            "mosaic": self.mosaic,
            "close_mosaic": self.close_mosaic,
            "scale": self.scale,
        }
        args.update(self.extra)
        return args


@dataclass
class EpochReport:
    """One finished epoch. ``epoch`` is 1-based; ``metrics`` uses the keys of :data:`EPOCH_METRIC_KEYS`."""

    epoch: int
    epochs: int
    metrics: dict[str, float]
    seconds: float
    eta_seconds: float

    def line(self) -> str:
        """One human-readable progress line."""
        m = self.metrics
        return (
            f"epoch {self.epoch}/{self.epochs} box_loss {m['train_box_loss']:.3f} cls_loss {m['train_cls_loss']:.3f}"
            f" mAP50 {m['val_mAP50']:.3f} mAP50-95 {m['val_mAP50-95']:.3f}"
            f" P {m['val_precision']:.3f} R {m['val_recall']:.3f} lr {m['lr_pg0']:.4g}"
            f" ({self.seconds:.1f} s/epoch, ETA {self.eta_seconds:.0f} s)"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    """Outcome of :func:`train`. ``metrics`` (:data:`FINAL_METRIC_KEYS`) are those of ``best_path`` on val."""

    best_path: Path
    last_path: Path
    run_dir: Path
    metrics: dict[str, float]
    epochs_run: int
    seconds: float
    class_names: list[str]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("best_path", "last_path", "run_dir"):
            data[key] = str(data[key])
        return data


def _ultralytics_dir() -> Path:
    """The installed ultralytics package folder, found without importing it (no settings side effects)."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or spec.origin is None:
        raise RuntimeError("ultralytics is not installed")
    return Path(spec.origin).resolve().parent


def _bundled_model_yamls() -> dict[str, Path]:
    """File name -> path of every model YAML shipped in ``ultralytics/cfg/models``."""
    root = _ultralytics_dir() / "cfg" / "models"
    return {p.name: p for p in sorted(root.rglob("*.yaml"))}


def resolve_model(spec: str) -> str:
    """Check a model spec and return what ``YOLO(...)`` should be given, without downloading anything.

    * ``*.pt``: must be an existing local file; returns its absolute path.
    * ``*.yaml`` / ``*.yml`` that exists as a path: returns its absolute path.
    * a bare YAML name bundled with ultralytics (``ultralytics/cfg/models/**``), including scaled names
      the way ultralytics resolves them (``yolo11n.yaml`` -> ``yolo11.yaml`` with scale ``n``, which the
      YAML must define): returned unchanged, ultralytics finds it itself.

    Anything else raises :class:`VisionInputError` naming the spec.
    """
    text = str(spec).strip()
    if not text:
        raise VisionInputError("empty model spec")
    path = Path(text).expanduser()
    suffix = path.suffix.lower()
    if suffix == ".pt":
        if not path.is_file():
            raise VisionInputError("model weights not found; no download is attempted", path=text)
        return str(path.resolve())
    if suffix not in {".yaml", ".yml"}:
        raise VisionInputError(
            "unsupported model spec: expected a local .pt checkpoint or a model .yaml", path=text
        )
    if path.is_file():
        _check_detection_yaml(path, text)
        return str(path.resolve())
    if path.name != text:  # a path with folders that does not exist: no bundled lookup
        raise VisionInputError("model YAML not found", path=text)
    bundled = _bundled_model_yamls()
    if text in bundled:
        _check_detection_yaml(bundled[text], text)
        return text
    # ultralytics: yaml_model_load() maps 'yolo11n.yaml' to 'yolo11.yaml' + scale guessed from the stem.
    unified = re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", text)
    scale_match = re.search(r"yolo(e-)?[v]?\d+([nslmx])", path.stem)
    if unified != text and unified in bundled and scale_match:
        scales = _check_detection_yaml(bundled[unified], text).get("scales") or {}
        scale = scale_match.group(2)
        if scale in scales:
            return text
        raise VisionInputError(f"{unified} has no scale '{scale}' (scales: {sorted(scales)})", path=text)
    raise VisionInputError(
        "unknown model YAML: neither a file nor a model config bundled with ultralytics", path=text
    )


def _check_detection_yaml(path: Path, display: str) -> dict[str, Any]:
    """Load a model YAML and insist on a plain YOLO detection head; returns the parsed YAML."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise VisionInputError(f"cannot read model YAML: {exc}", path=display) from exc
    head = data.get("head") if isinstance(data, dict) else None
    try:
        module = str(head[-1][2])
    except (TypeError, IndexError, KeyError) as exc:
        raise VisionInputError("not a model YAML: no 'head' layer list", path=display) from exc
    if module not in _DETECTION_HEADS:
        raise VisionInputError(
            f"not a detection model: its head is {module}; expected one of {sorted(_DETECTION_HEADS)}", path=display
        )
    return data


def _disable_integrations() -> None:
    """Switch off ultralytics' logging integrations in its settings (first of two guards, see :func:`train`).

    The settings file lives under ``YOLO_CONFIG_DIR``, which :func:`configure_ultralytics` points into
    the project home, so this does not touch a user's global ultralytics settings. It is only written
    when a value actually changes. With the keys False, ``add_integration_callbacks`` never imports the
    integration modules (importing mlflow/clearml alone costs seconds).
    """
    from ultralytics.utils import SETTINGS

    wanted = {key: False for key in _INTEGRATION_SETTINGS}
    wanted["sync"] = False  # anonymous usage analytics
    changed = {key: value for key, value in wanted.items() if SETTINGS.get(key) != value}
    if changed:
        SETTINGS.update(changed)


@contextlib.contextmanager
def _no_font_download() -> Iterator[None]:
    """Keep ``check_det_dataset`` from fetching ``Arial.ttf`` while a training run starts.

    ultralytics' dataset check calls ``check_font``, which ignores ``YOLO_OFFLINE`` and downloads the
    font into the settings folder when it is online (it is only used for plots, and ``plots=False``
    here). The name is swapped back afterwards; this module never draws text with it.
    """
    import ultralytics.data.utils as data_utils

    original = data_utils.check_font
    data_utils.check_font = _font_not_downloaded
    try:
        yield
    finally:
        data_utils.check_font = original


def _font_not_downloaded(font: str = "Arial.ttf") -> None:
    """Stand-in for ``ultralytics.utils.checks.check_font``: never downloads, returns no font."""
    return None


def _is_integration_callback(fn: Callable[..., Any]) -> bool:
    module = getattr(fn, "__module__", "") or ""
    if module == "ultralytics.utils.events":
        return True
    return module.startswith("ultralytics.utils.callbacks.") and module != "ultralytics.utils.callbacks.base"


def _strip_integration_callbacks(trainer: BaseTrainer) -> None:
    """Second guard: drop every integration callback from the trainer, whatever the settings say.

    Registered as the first non-default ``on_pretrain_routine_start`` callback. The trainer adds the
    integration callbacks (appended after ours) right before it runs that event, so removing them here,
    in place, also keeps their ``on_pretrain_routine_start`` from running (ClearML's would create a Task,
    MLflow's would write ``./mlruns``, Platform's would upload when an API key is configured). The
    final validation of ``best.pt`` later adds ultralytics' anonymous-analytics callback to the shared
    lists; it stays inert because ``sync`` is off (guard one) and ``YOLO_OFFLINE`` is set.
    """
    for fns in trainer.callbacks.values():
        kept = [fn for fn in fns if not _is_integration_callback(fn)]
        if len(kept) != len(fns):
            fns[:] = kept  # in place: run_callbacks may be iterating this very list


def _num(value: Any) -> float:
    return float(value.item() if hasattr(value, "item") else value)


def _epoch_metrics(trainer: BaseTrainer) -> dict[str, float]:
    """Map the trainer's state after an epoch onto :data:`EPOCH_METRIC_KEYS`."""
    metrics: dict[str, float] = {}
    train_losses = trainer.label_loss_items(trainer.tloss, prefix="train") if trainer.tloss is not None else {}
    for key, value in train_losses.items():  # 'train/box_loss'
        metrics[key.replace("/", "_", 1)] = _num(value)
    for key, value in (trainer.metrics or {}).items():
        if key in _BOX_METRICS:
            metrics[f"val_{_BOX_METRICS[key]}"] = _num(value)
        elif key.startswith("val/"):  # 'val/box_loss'
            metrics[key.replace("/", "_", 1)] = _num(value)
    for key, value in (getattr(trainer, "lr", None) or {}).items():  # 'lr/pg0'
        metrics[key.replace("/", "_", 1)] = _num(value)
    missing = [k for k in EPOCH_METRIC_KEYS if k not in metrics]
    if missing:  # a loss/metric layout this module does not know (e.g. a non-detection model)
        raise RuntimeError(
            f"ultralytics did not report {missing} after epoch {trainer.epoch + 1}; got {sorted(metrics)}"
        )
    return {k: metrics[k] for k in EPOCH_METRIC_KEYS}


class _EpochHook:
    """Builds an :class:`EpochReport` per epoch and captures the final (best.pt) validation."""

    def __init__(self, on_epoch: Callable[[EpochReport], None] | None) -> None:
        self.on_epoch = on_epoch
        self.reports: list[EpochReport] = []
        self.final_metrics: dict[str, float] | None = None
        self._in_epoch = False
        self._durations: list[float] = []

    def on_train_epoch_start(self, trainer: BaseTrainer) -> None:
        self._in_epoch = True

    def on_fit_epoch_end(self, trainer: BaseTrainer) -> None:
        if not self._in_epoch:
            # BaseTrainer.final_eval() validates best.pt and fires on_fit_epoch_end once more, outside any epoch.
            metrics = trainer.metrics or {}
            self.final_metrics = {ours: _num(metrics[theirs]) for theirs, ours in _BOX_METRICS.items()}
            return
        self._in_epoch = False
        seconds = float(trainer.epoch_time or 0.0)
        self._durations.append(seconds)
        epochs = int(trainer.epochs)
        done = trainer.epoch + 1
        mean = sum(self._durations) / len(self._durations)
        remaining = 0 if trainer.stop else max(epochs - done, 0)
        report = EpochReport(
            epoch=done,
            epochs=epochs,
            metrics=_epoch_metrics(trainer),
            seconds=seconds,
            eta_seconds=mean * remaining,
        )
        self.reports.append(report)
        if self.on_epoch is not None:
            self.on_epoch(report)  # ultralytics does not catch callback errors: an exception stops training


def train(
    data_yaml: Path,
    out_dir: Path,
    config: TrainConfig,
    on_epoch: Callable[[EpochReport], None] | None = None,
    *,
    run_name: str = "train",
) -> TrainResult:
    """Train ``config.model`` on ``data_yaml``; the run lives in ``out_dir/run_name`` (reused if present).

    ``on_epoch`` is called after every epoch's validation; an exception it raises stops training and
    propagates. Integration callbacks are switched off twice: in ultralytics' settings (kept in the
    project home) and by removing whatever integration callback the trainer still registers. Nothing
    is written to the current directory (absolute ``project``; AMP, whose check would fetch
    ``yolo26n.pt``, is off on CPU; ``plots=False``). The returned metrics are those of ``best.pt`` on
    the val split, from the validation the trainer runs on it at the end.
    """
    data_yaml = Path(data_yaml)
    if not data_yaml.is_file():
        raise VisionInputError("dataset YAML not found", path=data_yaml)
    model_spec = resolve_model(config.model)
    args = config.train_args()
    configure_ultralytics()
    import torch
    from ultralytics import YOLO

    _disable_integrations()
    run_root = Path(out_dir).expanduser().resolve()
    run_root.mkdir(parents=True, exist_ok=True)
    hook = _EpochHook(on_epoch)
    model = YOLO(model_spec, task="detect")
    model.add_callback("on_pretrain_routine_start", _strip_integration_callbacks)
    model.add_callback("on_train_epoch_start", hook.on_train_epoch_start)
    model.add_callback("on_fit_epoch_end", hook.on_fit_epoch_end)
    if config.threads is not None and str(config.device).lower() == "cpu":
        # The trainer's select_device() sets torch to ultralytics' thread count; re-apply ours after it.
        threads = int(config.threads)
        model.add_callback("on_pretrain_routine_end", lambda _trainer: torch.set_num_threads(threads))
    amp = bool(config.amp) and str(config.device).lower() not in {"cpu", "mps"}
    start = time.perf_counter()
    previous_threads = torch.get_num_threads()
    try:
        with _no_font_download():
            model.train(
                data=str(data_yaml.resolve()),
                project=str(run_root),
                name=run_name,
                exist_ok=True,
                plots=False,
                verbose=False,
                val=True,
                amp=amp,
                **args,
            )
    finally:
        torch.set_num_threads(previous_threads)
    seconds = time.perf_counter() - start
    trainer = model.trainer
    if trainer is None:
        raise RuntimeError("ultralytics returned without a trainer")
    best, last = Path(trainer.best), Path(trainer.last)
    if hook.final_metrics is None or not best.is_file():
        raise RuntimeError(f"training finished without a validated best checkpoint in {trainer.wdir}")
    names = trainer.data["names"]
    class_names = [str(names[i]) for i in sorted(names)] if isinstance(names, dict) else [str(n) for n in names]
    final = {k: hook.final_metrics[k] for k in FINAL_METRIC_KEYS}
    if any(not math.isfinite(v) for v in final.values()):
        raise RuntimeError(f"non-finite final metrics {final}")
    return TrainResult(
        best_path=best,
        last_path=last,
        run_dir=Path(trainer.save_dir),
        metrics=final,
        epochs_run=len(hook.reports),
        seconds=seconds,
        class_names=class_names,
    )
