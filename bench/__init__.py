"""`make bench`: the performance figures of the pipeline (see docs/performance.md).

Run ``python -m bench`` (all figures, < 15 min on 2 cores), ``python -m bench --quick`` (< 3 min: smaller
variants, the two training-heavy figures skipped) or ``python -m bench --gpu`` (figures 1 and 2 with
training on CUDA device 0). Results go to stdout as a table and to ``bench/results.json``.
"""
