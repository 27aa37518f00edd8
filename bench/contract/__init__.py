"""The contract every plug-in meets, shipped with the package so that it runs over a user's own
plug-ins without this repository's tests: each registered variant (shapes, causality, the fused path
against the explicit one, gradients to every parameter, determinism, its weights' rows, typed
options, and outputs and gradients against its naive float64 reference) and each registered task
(shapes, vocabulary, chance and difficulty declared, next-token targets, seeded streams, held-out
splits, a training pool that never feeds them).

    python -m pytest --pyargs bench.contract                                                  # every registered plug-in
    ATTENTION_BENCH_PLUGINS=./kerple.py python -m pytest --pyargs bench.contract -k kerple_log   # yours

The modules import the user's plug-ins (bench/external.py: the environment, installed entry points)
before they list what is registered. This repository's own tests run them too (pyproject's testpaths).
"""
