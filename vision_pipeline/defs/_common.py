"""Small helpers shared by the stage modules: upstream lookup and metadata shaping."""


from typing import Any

import dagster as dg

from vision_pipeline.jobs import JobHandle


def upstream(context: dg.AssetExecutionContext, key: str) -> dict[str, Any]:
    """Metadata of the latest materialisation of ``key`` (plain values).

    The assets manage their own I/O (files in the artifact store, records in ClearML and the job
    database); what a downstream stage needs from upstream — job id, store keys, paths — travels in
    the materialisation metadata.
    """
    event = context.instance.get_latest_materialization_event(dg.AssetKey(key))
    if event is None or event.asset_materialization is None:
        raise dg.Failure(f"asset '{key}' has never been materialised: materialise it (or select '*{key}') first")
    return {name: value.value for name, value in event.asset_materialization.metadata.items()}


def job_metadata(job: JobHandle) -> dict[str, Any]:
    """The ClearML task link and the job row, for every stage's MaterializeResult."""
    return {
        "clearml_task_url": dg.MetadataValue.url(job.task_url),
        "clearml_task_id": job.task_id,
        "job_id": job.id,
        "job_kind": job.kind,
    }


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "_no rows_"
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join("| " + " | ".join(_cell(r.get(c)) for c in columns) + " |\n" for r in rows)
    return head + body


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_cell(v) for v in value) + "]"
    return str(value).replace("|", "\\|")
