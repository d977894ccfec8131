"""The one exception type for bad input anywhere in :mod:`vision_pipeline.vision`."""

from __future__ import annotations

from pathlib import Path


class VisionInputError(ValueError):
    """Bad user input (dataset, config, image, model file), located as precisely as known.

    ``str(err)`` reads ``"<path>:<line>: <problem>"``; the line (or the path) is left out
    when it is not known.
    """

    def __init__(self, problem: str, *, path: str | Path | None = None, line: int | None = None) -> None:
        self.problem = problem
        self.path: str | None = None if path is None else str(path)
        self.line = line
        super().__init__(self._format())

    def _format(self) -> str:
        if self.path is None:
            return self.problem
        if self.line is None:
            return f"{self.path}: {self.problem}"
        return f"{self.path}:{self.line}: {self.problem}"

    def __str__(self) -> str:
        return self._format()

    def __reduce__(self):  # keep pickling (e.g. across process pools) working with keyword args
        return (_rebuild, (type(self), self.problem, self.path, self.line))


def _rebuild(cls: type[VisionInputError], problem: str, path: str | None, line: int | None) -> VisionInputError:
    return cls(problem, path=path, line=line)
