"""Migrations from other platforms into this pipeline's ClearML + job-record world. No Dagster here."""

from .mlflow_import import ImportSummary, MLflowImportError, RunReport, benchmark_import, import_runs

__all__ = ["ImportSummary", "MLflowImportError", "RunReport", "benchmark_import", "import_runs"]
