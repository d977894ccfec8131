"""One ConfigurableResource per external system: ClearML, the job-record database, artifact storage.

Each is a thin adapter: it turns its (launch-time resolved) configuration into the plain domain
object from ``tracking``, ``records`` or ``storage``. Values that name a server or a secret come from
the environment through ``dg.EnvVar`` (see ``definitions.py``), so they are hidden in the UI and never
written to run config, ClearML hyperparameters or job rows.
"""


from typing import Optional

import dagster as dg
from pydantic import PrivateAttr

from vision_pipeline import settings
from vision_pipeline.records.store import JobStore
from vision_pipeline.storage import ArtifactStore, make_store
from vision_pipeline.tracking import ClearMLConfig, ClearMLTracker
from vision_pipeline.tracking.env import offline_flag


class ClearMLResource(dg.ConfigurableResource):
    """ClearML experiment tracking. Offline (sessions under the project home) unless a server is configured."""

    api_host: Optional[str] = None
    web_host: Optional[str] = None
    files_host: Optional[str] = None
    access_key: Optional[str] = None
    secret_key: Optional[str] = None
    offline_mode: Optional[str] = None
    project_id: int = 1

    def tracker(self) -> ClearMLTracker:
        return ClearMLTracker(
            ClearMLConfig(
                api_host=self.api_host or None,
                web_host=self.web_host or None,
                files_host=self.files_host or None,
                access_key=self.access_key or None,
                secret_key=self.secret_key or None,
                offline_mode=offline_flag(self.offline_mode),
                project_id=self.project_id,
            )
        )


class JobRecordsResource(dg.ConfigurableResource):
    """Job rows (training/export/inference/dataset) in SQLite under the project home, or Postgres."""

    database_url: Optional[str] = None
    auto_migrate: bool = True

    _store: Optional[JobStore] = PrivateAttr(default=None)

    def store(self) -> JobStore:
        if self._store is None:
            store = JobStore(self.database_url or settings.database_url())
            store.ensure_schema(auto_migrate=self.auto_migrate)
            self._store = store
        return self._store

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._store is not None:
            self._store.dispose()
            self._store = None


class ArtifactStorageResource(dg.ConfigurableResource):
    """Checkpoints, exports and inference outputs: the local project home, or S3 when a bucket is set."""

    s3_bucket: Optional[str] = None
    s3_prefix: str = ""
    s3_endpoint_url: Optional[str] = None
    aws_region: Optional[str] = None
    aws_access_key_id: Optional[str] = None
    aws_secret_access_key: Optional[str] = None

    def store(self) -> ArtifactStore:
        return make_store(
            bucket=self.s3_bucket or None,
            prefix=self.s3_prefix or "",
            endpoint_url=self.s3_endpoint_url or None,
            region=self.aws_region or None,
            access_key_id=self.aws_access_key_id or None,
            secret_access_key=self.aws_secret_access_key or None,
        )


def _env(name: str) -> Optional[dg.EnvVar]:
    """``dg.EnvVar(name)`` when the variable is set, else None.

    Dagster refuses an ``EnvVar`` whose variable is unset, but every one of these is optional by
    design (unset means: offline ClearML, SQLite, local artifacts). The value itself is still resolved
    by Dagster at launch and hidden in the UI; only its presence is looked at here.
    """
    import os

    return dg.EnvVar(name) if os.environ.get(name) else None


def resources_from_env() -> dict[str, dg.ConfigurableResource]:
    return {
        "clearml": ClearMLResource(
            api_host=_env("CLEARML_API_HOST"),
            web_host=_env("CLEARML_WEB_HOST"),
            files_host=_env("CLEARML_FILES_HOST"),
            access_key=_env("CLEARML_API_ACCESS_KEY"),
            secret_key=_env("CLEARML_API_SECRET_KEY"),
            offline_mode=_env("CLEARML_OFFLINE_MODE"),
        ),
        "job_records": JobRecordsResource(database_url=_env("VISION_PIPELINE_DATABASE_URL")),
        "artifacts": ArtifactStorageResource(
            s3_bucket=_env("VISION_PIPELINE_S3_BUCKET"),
            s3_prefix=_env("VISION_PIPELINE_S3_PREFIX") or "",
            s3_endpoint_url=_env("AWS_ENDPOINT_URL_S3") or _env("AWS_ENDPOINT_URL"),
            aws_region=_env("AWS_REGION") or _env("AWS_DEFAULT_REGION"),
            aws_access_key_id=_env("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=_env("AWS_SECRET_ACCESS_KEY"),
        ),
    }
