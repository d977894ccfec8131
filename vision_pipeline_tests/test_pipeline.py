"""The whole graph on tiny data: real ultralytics, real ClearML SDK (offline), real onnxruntime, real SQLite.

One materialisation of all four assets is shared by the assertions below (training is the slow part);
the bad-input tests run only as far as they need to.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

from vision_pipeline import settings
from vision_pipeline.records.store import JobStore
from vision_pipeline.tracking.session_reader import session_for_task
from vision_pipeline.vision.synthetic import generate_synthetic_dataset
from vision_pipeline_tests.pipeline_helpers import ALL_ASSETS, latest_metadata, materialize, tiny_run_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory):
    """Materialise the whole graph once, in a project home of its own."""
    home = tmp_path_factory.mktemp("pipeline_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISION_PIPELINE_HOME", str(home))
        for name in ("CLEARML_API_HOST", "VISION_PIPELINE_DATABASE_URL", "VISION_PIPELINE_S3_BUCKET"):
            mp.delenv(name, raising=False)
        instance = dg.DagsterInstance.ephemeral()
        result = materialize(ALL_ASSETS, tiny_run_config(epochs=2), instance)
        metadata = {key: latest_metadata(instance, key) for key in ALL_ASSETS} if result.success else {}
        yield {"home": home, "result": result, "instance": instance, "metadata": metadata}


@pytest.fixture
def run(pipeline_run, monkeypatch):
    monkeypatch.setenv("VISION_PIPELINE_HOME", str(pipeline_run["home"]))
    assert pipeline_run["result"].success, "the pipeline run failed; see the captured log"
    return pipeline_run


def _session(task_id: str):
    return session_for_task(settings.clearml_dir() / "offline", task_id)


def test_all_four_assets_and_checks(run) -> None:
    result = run["result"]
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == set(ALL_ASSETS)
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"dataset_is_valid": True, "map50_quality_gate": True, "export_parity": True}
    for key, md in run["metadata"].items():
        assert md["clearml_task_url"].startswith("file://"), key
        assert md["clearml_task_id"].startswith("offline-"), key


def test_job_rows_follow_the_run(run) -> None:
    store = JobStore(settings.database_url())
    run_id = run["result"].run_id
    rows = {r["kind"]: r for r in store.list_jobs() if r["dagster_run_id"] == run_id}
    assert set(rows) == {"dataset", "training", "export", "inference"}
    kinds = {"dataset": "dataset", "training": "trained_checkpoint", "export": "exported_model", "inference": "inference_outputs"}
    for kind, row in rows.items():
        md = run["metadata"][kinds[kind]]
        assert row["status"] == "completed" and row["finished_at"] and row["error"] is None
        assert row["clearml_task_id"] == md["clearml_task_id"] and row["id"] == md["job_id"]
    training = rows["training"]
    assert set(training["result"]) >= {"mAP50", "mAP50-95", "precision", "recall"}
    assert training["dataset_hash"] == run["metadata"]["dataset"]["content_hash"]
    assert rows["export"]["training_job_id"] == training["id"]
    assert rows["inference"]["export_job_id"] == rows["export"]["id"]


def test_training_session_has_scalars_per_epoch_artifacts_and_model(run) -> None:
    md = run["metadata"]["trained_checkpoint"]
    session = _session(md["clearml_task_id"])
    assert session.name == f"Training Job {md['job_id']} - yolo11n" and session.project == "Project 1"
    assert session.final_status == "completed"
    for title, series in (("box_loss", "train"), ("cls_loss", "train"), ("mAP50", "val"), ("mAP50-95", "val"),
                          ("precision", "val"), ("recall", "val"), ("pg0", "lr")):
        assert sorted(session.series(title, series)) == [1, 2], (title, series)
    assert session.hyperparams["train"]["epochs"] == "2"
    assert {"checkpoint_best", "checkpoint_last"} <= set(session.artifacts)
    (model,) = session.models
    assert model["id"] == md["clearml_model_id"] and "best" in model["init"]["tags"]
    assert Path(model["weights"]["weights_filename"]).is_file()


def test_export_parity_and_model(run) -> None:
    md = run["metadata"]["exported_model"]
    assert md["parity_passed"] and md["parity_max_box_diff_px"] <= md["parity_box_tolerance_px"]
    assert md["parity_matched"] > 0, "parity compared no detections: the test would prove nothing"
    session = _session(md["clearml_task_id"])
    assert session.final_status == "completed"
    assert {"export_onnx", "export_torchscript"} <= set(session.artifacts)
    (model,) = session.models
    assert model["init"]["framework"] == "ONNX"


def test_inference_outputs(run) -> None:
    md = run["metadata"]["inference_outputs"]
    assert md["images"] == 16 + 2  # val images + ultralytics' two sample images
    jsonl = Path(md["predictions"].removeprefix("file://"))
    lines = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    assert len(lines) == md["detections"] > 0
    for row in lines:
        assert {"image", "class", "class_id", "confidence", "box_xyxy"} <= set(row)
        assert len(row["box_xyxy"]) == 4 and 0 <= row["confidence"] <= 1
    assert "| image |" in md["first_predictions"]
    session = _session(md["clearml_task_id"])
    assert set(session.series("latency_ms", "p50")) == {0} and set(session.series("latency_ms", "p99")) == {0}
    assert any(e.get("type") == "training_debug_image" for e in session.events)


# ---------------------------------------------------------------------------- bad input
def _dataset(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    generate_synthetic_dataset(src, n_train=8, n_val=4, imgsz=64)
    return src


def _corrupt_image(src: Path) -> str:
    img = sorted((src / "images" / "train").iterdir())[0]
    img.write_bytes(img.read_bytes()[:40])
    return img.name


def _bad_class(src: Path) -> str:
    label = sorted((src / "labels" / "train").iterdir())[0]
    label.write_text("9 0.5 0.5 0.2 0.2\n")
    return f"{label.name}:1"


def _bad_coords(src: Path) -> str:
    label = sorted((src / "labels" / "val").iterdir())[0]
    label.write_text("0 1.5 0.5 0.2 0.2\n")
    return f"{label.name}:1"


def _wrong_fields(src: Path) -> str:
    label = sorted((src / "labels" / "train").iterdir())[1]
    label.write_text("0 0.5 0.5 0.2 0.2\n1 0.5 0.5\n")
    return f"{label.name}:2"


def _empty_split(src: Path) -> str:
    for p in (src / "images" / "val").iterdir():
        p.unlink()
    for p in (src / "labels" / "val").iterdir():
        p.unlink()
    return "val"


def _no_names(src: Path) -> str:
    data = yaml.safe_load((src / "data.yaml").read_text())
    data.pop("names")
    (src / "data.yaml").write_text(yaml.safe_dump(data))
    return "names"


def _missing_folder(src: Path) -> str:
    shutil.rmtree(src)
    return src.name


BAD_INPUTS = {
    "corrupt image": _corrupt_image,
    "class out of range": _bad_class,
    "coordinates out of range": _bad_coords,
    "wrong number of fields": _wrong_fields,
    "empty split": _empty_split,
    "data.yaml without names": _no_names,
    "source folder missing": _missing_folder,
}


def _assert_failed_cleanly(result, kind: str, expected: str) -> dict:
    assert not result.success
    store = JobStore(settings.database_url())
    rows = store.list_jobs()
    assert [r["kind"] for r in rows] == [kind], "nothing downstream may run"
    row = rows[0]
    assert row["status"] == "failed" and expected in row["error"]
    session = _session(row["clearml_task_id"])
    assert session.final_status == "failed" and expected in session.status["status_reason"]
    assert session.models == []
    return row


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_dataset_fails_with_named_file(case: str, tmp_path: Path) -> None:
    src = _dataset(tmp_path)
    expected = BAD_INPUTS[case](src)
    result = materialize(ALL_ASSETS, tiny_run_config(src))
    _assert_failed_cleanly(result, "dataset", expected)
    skipped = {e.step_key for e in result.all_events if e.event_type_value == "STEP_SKIPPED"}
    assert "trained_checkpoint" in skipped or not any(
        e.step_key == "trained_checkpoint" and e.event_type_value == "STEP_START" for e in result.all_events
    )


@pytest.mark.parametrize("model", ["missing_weights.pt", "yolo99z.yaml"])
def test_missing_model_fails_training_without_registering(model: str, tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    assert materialize(["dataset"], tiny_run_config(), instance).success
    result = materialize(["trained_checkpoint", "exported_model"], tiny_run_config(model=str(tmp_path / model) if model.endswith(".pt") else model), instance)
    assert not result.success
    store = JobStore(settings.database_url())
    (row,) = store.list_jobs("training")
    assert row["status"] == "failed" and Path(model).name in row["error"]
    session = _session(row["clearml_task_id"])
    assert session.final_status == "failed" and session.models == []
    assert store.list_jobs("export") == []


def test_failed_run_relaunched_after_fix(tmp_path: Path) -> None:
    src = _dataset(tmp_path)
    good = (src / "labels" / "train" / sorted(p.name for p in (src / "labels" / "train").iterdir())[0]).read_text()
    name = _bad_class(src)
    instance = dg.DagsterInstance.ephemeral()
    assert not materialize(["dataset"], tiny_run_config(src), instance).success
    (src / "labels" / "train" / name.split(":")[0]).write_text(good)
    assert materialize(["dataset"], tiny_run_config(src), instance).success
    rows = JobStore(settings.database_url()).list_jobs("dataset")
    assert sorted(r["status"] for r in rows) == ["completed", "failed"]
    assert not [r for r in rows if r["status"] in ("pending", "running")]
