"""Benchmarks for issue #7: is the door fast, light and offline-proof at consortium scale?

``python -m bench`` (or ``bench/run``) builds the data, measures every figure and
writes ``bench/results.json``; see docs/performance.md. The benchmarks are kept out
of the test suite, which only runs ``--quick`` once to show they still work.
"""
