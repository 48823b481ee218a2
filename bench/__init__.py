"""`make bench`: the generated service measured against tiny references in the same run.

__main__.py   bake the defaults, run every runner, write docs/benchmarks.{md,json}
project.py    the bake, the venv with its requirements, the apps' command lines, the upstream
apps/         the references: bare.py, minimal_proxy.py (and seed.Dockerfile beside them)
startup.py    process spawn → first 200          throughput.py  wrk: req/s and p99
images.py     Docker: size, run → first 200, rebuild vs cold build
render.py     cookiecutter --no-input            suite.py       `make test` from its JUnit XML
servers.py    start, probe, stop                 wrk.py         run wrk, read its report
stats.py      samples, goals, rows (pure)        layers.py      build steps, image layers (pure)
imports.py    python -X importtime               report.py      markdown and JSON
"""
