class RecordsError(RuntimeError):
    """A job-record database problem, phrased as what is wrong and how to fix it."""
