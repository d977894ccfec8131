"""The ClearML lifecycle against the real SDK in offline mode, checked by reading the session back."""

from __future__ import annotations

from pathlib import Path

import pytest

from vision_pipeline.tracking import ClearMLConfig, ClearMLTracker, TrackingError, metric_title_series
from vision_pipeline.tracking.session_reader import SessionError, read_session, session_for_task


def _tracker(tmp_path: Path) -> ClearMLTracker:
    return ClearMLTracker(ClearMLConfig(cache_dir=tmp_path / "clearml", project_id=7))


def test_metric_naming_convention() -> None:
    assert metric_title_series("train_loss") == ("loss", "train")
    assert metric_title_series("val_mAP50-95") == ("mAP50-95", "val")
    assert metric_title_series("accuracy") == ("accuracy", "metrics")


def test_completed_task_records_everything(tmp_path: Path) -> None:
    tracker = _tracker(tmp_path)
    weights = tmp_path / "best.pt"
    weights.write_bytes(b"\x00" * 2048)
    with tracker.task("Training Job 1 - yolo11n", "training") as task:
        task.connect({"epochs": 3, "lr0": 0.01}, name="train")
        for i in range(3):
            task.log_metrics({"train_loss": 1.0 / (i + 1), "val_mAP50": 0.1 * i, "bad": float("nan")}, i)
        task.upload_artifact("checkpoint_best", weights, {"checkpoint_type": "best", "is_best": True})
        model_id = task.register_model(weights, name="best", tags=["best", "yolo11n"], metadata={"mAP50": 0.5})
        task_id, url = task.id, task.url
    assert task_id.startswith("offline-") and url.startswith("file://")

    session = session_for_task(tracker.offline_root(), task_id)
    assert session.name == "Training Job 1 - yolo11n" and session.project == "Project 7"
    assert session.final_status == "completed"
    assert session.series("loss", "train") == {0: 1.0, 1: 0.5, 2: pytest.approx(1 / 3)}
    assert session.series("mAP50", "val")[2] == pytest.approx(0.2)
    assert not session.series("bad", "metrics")  # NaN is skipped, not logged
    assert session.hyperparams["train"] == {"epochs": "3", "lr0": "0.01"}
    artifact = session.artifacts["checkpoint_best"]
    assert artifact["content_size"] == 2048 and ["checkpoint_type", "best"] in artifact["display_data"]
    (model,) = session.models
    assert model["id"] == model_id and model["init"]["tags"] == ["best", "yolo11n"]
    assert model["init"]["config_dict"] == {"metadata": {"mAP50": "0.5"}}
    assert Path(model["weights"]["weights_filename"]).name == "best.pt"


def test_exception_marks_task_failed_and_propagates(tmp_path: Path) -> None:
    tracker = _tracker(tmp_path)
    with pytest.raises(ValueError, match="bad label"):
        with tracker.task("Export Job 2 - onnx", "custom") as task:
            task_id = task.id
            raise ValueError("bad label")
    session = session_for_task(tracker.offline_root(), task_id)
    assert session.final_status == "failed"
    assert session.status["status_reason"] == "ValueError: bad label"
    assert session.models == []


def test_tasks_in_sequence_are_distinct(tmp_path: Path) -> None:
    tracker = _tracker(tmp_path)
    ids = []
    for n in range(2):
        with tracker.task(f"Inference Job {n} - x", "inference") as task:
            ids.append(task.id)
    assert len(set(ids)) == 2


def test_host_without_keys_is_a_clear_error() -> None:
    with pytest.raises(TrackingError, match="CLEARML_API_ACCESS_KEY and CLEARML_API_SECRET_KEY are not"):
        ClearMLTracker(ClearMLConfig(api_host="http://clearml:8008"))


def test_offline_mode_flag_wins_over_host() -> None:
    tracker = ClearMLTracker(ClearMLConfig(api_host="http://clearml:8008", offline_mode=True))
    assert tracker.offline


def test_missing_weights_file_is_named(tmp_path: Path) -> None:
    tracker = _tracker(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        with tracker.task("Training Job 3 - x") as task:
            task.register_model(tmp_path / "nope.pt", name="best")
    assert read_session(next(tracker.offline_root().glob("*.zip"))).models == []


def test_corrupt_session_zip_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "offline-deadbeef.zip"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(SessionError, match="corrupt offline session"):
        read_session(bad)


def test_child_process_gets_a_task_of_its_own(tmp_path: Path) -> None:
    """A process started after a task ran here (webserver, daemon, run worker) must not inherit it."""
    import os
    import subprocess
    import sys

    tracker = _tracker(tmp_path)
    with tracker.task("Dataset Job 1 - parent", "data_processing"):
        pass
    os.environ["CLEARML_PROC_MASTER_ID"] = f"{os.getpid()}:"  # what the SDK leaves in a process after a task
    code = (
        "from pathlib import Path\n"
        "from vision_pipeline.tracking import ClearMLConfig, ClearMLTracker\n"
        f"t = ClearMLTracker(ClearMLConfig(cache_dir=Path({str(tmp_path / 'clearml')!r})))\n"
        "with t.task('Dataset Job 2 - child', 'data_processing') as task:\n"
        "    print('TASK', task.id)\n"
    )
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=dict(os.environ))
    finally:
        os.environ.pop("CLEARML_PROC_MASTER_ID", None)
    assert out.returncode == 0, out.stderr
    child_id = next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("TASK "))
    assert child_id.startswith("offline-")
    assert session_for_task(tracker.offline_root(), child_id).final_status == "completed"
