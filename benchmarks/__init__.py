"""Benchmarks: `make bench` (or `python -m benchmarks`). They print figures; they never assert.

- cold start of the API Lambda handler, each run in a fresh Python process, against a plain
  FastAPI + Mangum baseline;
- DynamoDB calls made by one API request, for the main routes;
- the voice service under N simultaneous simulated calls with fixed-latency fake providers:
  added latency, CPU per call, outbound frame lateness, calls per core (benchmarks/voice.py).
"""
