"""The core of the benchmark: model, training, evaluation, results and the command line.

``bench`` uses ``variants`` and ``tasks``; they never import ``bench``.
"""
