"""`make bench`: the generated service measured against tiny references in the same run.

__main__.py   bake the defaults (one per upstream API), run every runner, write docs/benchmarks.*
              and the streaming chart; refuses docs/ after a failed `make test`
project.py    the bakes, the venv with their requirements, the apps' command lines, the upstream
apps/         the references: bare.py, minimal_proxy.py, raw_relay.py (seed.Dockerfile beside)
startup.py    process spawn → first 200          throughput.py  wrk: req/s and p99
streaming.py  CPU per streamed event, first token at load, memory, burst, streams per vCPU
shared_limits.py  /v1/chat with REDIS_URL and a token budget against without
images.py     Docker: size, run → first 200, rebuild vs cold build
render.py     cookiecutter --no-input            suite.py       `make test` from its JUnit XML
profile.py    py-spy: CPU per request and the service's own functions in it
paced_upstream.py  the paced fake OpenAI (both APIs)   loadgen.py  the socket load generator
servers.py    start, probe, stop                 wrk.py         run wrk, read its report
stats.py      samples, goals, rows (pure)        layers.py      build steps, image layers (pure)
procstat.py   CPU time and peak RSS from /proc   chart.py       the SVG chart
imports.py    python -X importtime               report.py      markdown and JSON
"""
