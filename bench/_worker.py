"""``python -m bench._worker module:function '<json kwargs>' out.json``: one benchmark piece in a fresh process.

Benchmarks that create ClearML tasks or load models run here, so the SDK's process-wide state (patched
hooks, reporter threads) and the models' memory never leak into the next measurement.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
from pathlib import Path


def main() -> int:
    target, raw_args, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    module_name, func_name = target.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    result = func(**json.loads(raw_args))
    result["_maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, default=str))
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
