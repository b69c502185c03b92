"""What the per-stream metrics add to a push: the counter and histogram calls a stream makes
for each response it sends and each ACK it reads, timed in a loop.

    python bench/metrics_cost.py

Fan-out runs on a shared two-core machine vary by more than this cost, so it is measured
on its own and multiplied out per push.
"""

from __future__ import annotations

import timeit

from xdscp.metrics import ACKS, PUSH_LATENCY, RESPONSES, per_type
from xdscp.type_urls import ENDPOINT


def main() -> None:
    n = 200_000
    response = timeit.timeit(lambda: per_type(RESPONSES, ENDPOINT, "sotw").inc(), number=n) / n
    ack = timeit.timeit(lambda: per_type(ACKS, ENDPOINT, "sotw").inc(), number=n) / n
    latency = timeit.timeit(lambda: PUSH_LATENCY.observe(0.01), number=n) / n
    per_stream = response + ack + latency
    print(f"per response: counter {response * 1e6:.2f} us; per ACK: counter {ack * 1e6:.2f} us; "
          f"per push: histogram {latency * 1e6:.2f} us")
    for streams in (1_000, 10_000):
        print(f"  a push to {streams:>6} streams: {per_stream * streams * 1000:.1f} ms of metrics in all")


if __name__ == "__main__":
    main()
