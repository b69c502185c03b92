"""The Prometheus metrics move as a scripted scenario says they must (values, not presence).

Metrics are process-wide and other tests run in this process too, so each check is a
difference between two scrapes of the real /metrics endpoint.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from pathlib import Path

import grpc
from prometheus_client.parser import text_string_to_metric_families

from xdscp.model.service import ServiceKey
from xdscp.type_urls import CLUSTER, ENDPOINT

from plane import Plane, running_plane, service
from waiting import eventually
from xds_client import node, sotw_request, sotw_stream

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(plane: Plane) -> Samples:
    """The admin server's /metrics (it runs on this event loop: fetched from a thread)."""
    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{plane.cp.admin_port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    text = await asyncio.to_thread(get)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(after: Samples, before: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def test_stream_response_ack_nack_push_and_rejection_metrics(plane: Plane) -> None:
    before = await scrape(plane)
    async with grpc.aio.insecure_channel(plane.target) as channel:
        s = sotw_stream(channel)
        s.send(sotw_request(CLUSTER, with_node=node("metered")))
        cds = await s.recv()
        s.send(sotw_request(CLUSTER, version=cds.version_info, nonce=cds.nonce))  # ACK
        s.send(sotw_request(ENDPOINT, ["echo"]))
        eds = await s.recv()
        s.send(sotw_request(ENDPOINT, ["echo"], nonce=eds.nonce, error="bad endpoint"))  # NACK
        await s.expect_silence(0.2)
        during = await scrape(plane)
        assert moved(during, before, "xdscp_streams", transport="sotw") == 1
        for t in ("cds", "eds"):
            assert moved(during, before, "xdscp_stream_types", type=t, transport="sotw") == 1
            assert moved(during, before, "xdscp_responses_total", type=t, transport="sotw") == 1
        assert moved(during, before, "xdscp_acks_total", type="cds", transport="sotw") == 1
        assert moved(during, before, "xdscp_nacks_total", type="eds", transport="sotw") == 1

        # A registry change: one snapshot, one push (to a stream served before), resource counts.
        written = time.time()
        plane.write([service("echo", 9001, 9002), service("api", 9101), service("new", 9201)])
        await s.recv()
        after = await scrape(plane)
        assert moved(after, during, "xdscp_snapshots_published_total") == 1
        assert moved(after, during, "xdscp_snapshot_build_seconds_count") == 1
        assert moved(after, during, "xdscp_push_latency_seconds_count") == 1
        assert value(after, "xdscp_resources", type="cds") == 3
        assert value(after, "xdscp_source_last_sync_timestamp_seconds", source="file") >= written

        # Garbage on a stream: refused, and counted by reason.
        bad = sotw_stream(channel, raw_requests=True)
        bad.send(b"\xff\xff\xff")
        assert await bad.closed_with() == grpc.StatusCode.INVALID_ARGUMENT
        await s.close()
    assert moved(await scrape(plane), before, "xdscp_rejected_requests_total", reason="malformed") == 1
    async def closed() -> bool:
        return moved(await scrape(plane), before, "xdscp_streams", transport="sotw") == 0

    await eventually(closed, what="streams closed")


async def test_debounce_folds_a_burst_into_one_push_and_counts_it(tmp_path: Path) -> None:
    async with running_plane(tmp_path, [service("a", 9001), service("b", 9002)], xds={"debounce": 0.5}) as plane:
        before = await scrape(plane)
        a = ServiceKey("public", "DEFAULT_GROUP", "a")
        plane.write([service("a", 9001, 9003), service("b", 9002)])
        await eventually(lambda: len(plane.cp.registry.services[a].instances) == 2, what="a changed")
        plane.write([service("a", 9001, 9003), service("b", 9002, 9004)])  # within the window
        await plane.wait_published(2)
        after = await scrape(plane)
        assert plane.cp.publisher.published == 2  # one push for both changes
        assert moved(after, before, "xdscp_snapshots_published_total") == 1
        assert moved(after, before, "xdscp_debounce_merged_changes_total") == 1
