"""ClearML: task lifecycle, offline/online mode, web URLs, offline-session sync. No Dagster here."""

from .clearml_session import (
    ClearMLConfig,
    ClearMLTracker,
    TrackedTask,
    TrackingError,
    metric_title_series,
)

__all__ = ["ClearMLConfig", "ClearMLTracker", "TrackedTask", "TrackingError", "metric_title_series"]
