"""Registry model -> Envoy resources, and what a change re-translates."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import health_check_pb2

from xdscp.config import Config, ListenerConfig, XdsConfig
from xdscp.model.service import Instance, Service
from xdscp.runtime_settings import translator
from xdscp.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE


def svc(name: str = "echo", *instances: Instance, **fields) -> Service:
    return Service(name=name, instances=instances, **fields)


def inst(port: int, **fields) -> Instance:
    return Instance(host="127.0.0.1", port=port, **fields)


def translate(*services: Service) -> tuple[object, object]:
    t = translator(Config(listener=ListenerConfig(port=10080)))
    snap = t.update({s.key: s for s in services}, [s.key for s in services])
    return t, snap


def test_cluster_settings() -> None:
    s = svc("echo", inst(1), lb_policy="MAGLEV", connect_timeout=0.25,
            health_check={"type": "http", "path": "/hc", "expected_statuses": [200, 204]},
            outlier_detection={"consecutive_5xx": 3})
    _, snap = translate(s)
    c = snap.get(CLUSTER).resources["echo"].message
    assert c.type == cluster_pb2.Cluster.EDS and c.lb_policy == cluster_pb2.Cluster.MAGLEV
    assert c.eds_cluster_config.eds_config.HasField("ads")
    assert c.connect_timeout.ToMilliseconds() == 250
    assert c.common_lb_config.healthy_panic_threshold.value == 0
    hc = c.health_checks[0]
    assert hc.http_health_check.path == "/hc"
    assert [(r.start, r.end) for r in hc.http_health_check.expected_statuses] == [(200, 201), (204, 205)]
    assert c.outlier_detection.consecutive_5xx.value == 3


def test_every_lb_policy_maps() -> None:
    for policy in ("ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "RING_HASH", "MAGLEV"):
        _, snap = translate(svc("echo", lb_policy=policy))
        assert cluster_pb2.Cluster.LbPolicy.Name(snap.get(CLUSTER).resources["echo"].message.lb_policy) == policy


def test_load_assignment_localities_weights_and_health() -> None:
    s = svc("echo",
            inst(1, zone="a", region="r1", weight=2),
            inst(2, zone="b", region="r1", healthy=False),
            inst(3, zone="a", region="r1", weight=0.5),
            inst(4, enabled=False),
            inst(5, draining=True),
            inst(6, weight=0))
    _, snap = translate(s)
    cla = snap.get(ENDPOINT).resources["echo"].message
    got = {(loc.locality.region, loc.locality.zone):
           [(e.endpoint.address.socket_address.port_value, e.load_balancing_weight.value,
             health_check_pb2.HealthStatus.Name(e.health_status)) for e in loc.lb_endpoints]
           for loc in cla.endpoints}
    assert got == {
        ("", ""): [(5, 100, "DRAINING"), (6, 1, "DRAINING")],  # disabled port 4 left out
        ("r1", "a"): [(1, 200, "HEALTHY"), (3, 50, "HEALTHY")],
        ("r1", "b"): [(2, 100, "UNHEALTHY")],
    }


def test_instance_order_does_not_change_versions() -> None:
    _, a = translate(svc("echo", inst(1), inst(2)))
    _, b = translate(svc("echo", inst(2), inst(1)))
    assert a.get(ENDPOINT).version == b.get(ENDPOINT).version


def test_listener_and_routes() -> None:
    _, snap = translate(svc("echo", inst(1)), svc("orders", inst(2), group="payments", namespace="prod"))
    assert snap.get(LISTENER).resources["ingress_http"].message.address.socket_address.port_value == 10080
    rc = snap.get(ROUTE).resources["ingress_http"].message
    assert [(vh.name, list(vh.domains), vh.routes[0].route.cluster) for vh in rc.virtual_hosts] == [
        ("echo", ["echo", "echo:*"], "echo"),
        ("orders.payments.prod", ["orders.payments.prod", "orders.payments.prod:*"], "orders.payments.prod"),
    ]


def test_per_type_config_source_points_eds_and_rds_at_the_xds_cluster() -> None:
    t = translator(Config(xds=XdsConfig(config_source="delta_grpc", xds_cluster="cp")))
    s = svc("echo", inst(1))
    snap = t.update({s.key: s}, [s.key])
    eds = snap.get(CLUSTER).resources["echo"].message.eds_cluster_config.eds_config
    assert eds.WhichOneof("config_source_specifier") == "api_config_source"
    assert eds.api_config_source.api_type == eds.api_config_source.DELTA_GRPC
    assert eds.api_config_source.grpc_services[0].envoy_grpc.cluster_name == "cp"
    listener = snap.get(LISTENER).resources["ingress_http"].message
    assert listener.filter_chains[0].filters[0].typed_config.value.count(b"cp") == 1


def test_on_demand_listener_asks_for_clusters_before_routing_within_the_configured_timeout() -> None:
    from envoy.extensions.filters.http.on_demand.v3 import on_demand_pb2
    from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
    t = translator(Config(listener=ListenerConfig(on_demand=True, on_demand_timeout=2.5)))
    snap = t.update({}, [])
    listener = snap.get(LISTENER).resources["ingress_http"].message
    hcm = hcm_pb2.HttpConnectionManager.FromString(listener.filter_chains[0].filters[0].typed_config.value)
    assert [f.name for f in hcm.http_filters] == ["envoy.filters.http.on_demand", "envoy.filters.http.router"]
    od = on_demand_pb2.OnDemand.FromString(hcm.http_filters[0].typed_config.value)
    assert od.odcds.timeout.ToMilliseconds() == 2500 and od.odcds.source.HasField("ads")
    assert Config().listener.on_demand_timeout == 5.0  # Envoy's own default, when not set


def test_one_instance_change_reserializes_one_assignment_only() -> None:
    a, b = svc("a", inst(1)), svc("b", inst(2))
    t, first = translate(a, b)
    a2 = svc("a", inst(1, healthy=False))
    second = t.update({a2.key: a2, b.key: b}, [a2.key])
    assert second.get(ENDPOINT).changed == frozenset({"a"})
    assert second.get(ENDPOINT).resources["b"] is first.get(ENDPOINT).resources["b"]
    assert second.get(CLUSTER) is first.get(CLUSTER)  # untouched type: same object, streams skip it
    assert second.get(ROUTE) is first.get(ROUTE)


def test_removed_service_leaves_every_type() -> None:
    a, b = svc("a", inst(1)), svc("b", inst(2))
    t, _ = translate(a, b)
    snap = t.update({b.key: b}, [a.key])
    assert set(snap.get(CLUSTER).resources) == {"b"}
    assert set(snap.get(ENDPOINT).resources) == {"b"}
    assert [vh.name for vh in snap.get(ROUTE).resources["ingress_http"].message.virtual_hosts] == ["b"]


def test_name_collision_keeps_the_first_and_reports_the_second() -> None:
    # "x.g.ns" in the default scope and "x" in group g / namespace ns name the same cluster.
    first = svc("x.g.ns", inst(1))
    second = svc("x", inst(2), group="g", namespace="ns")
    t, _ = translate(first)
    snap = t.update({first.key: first, second.key: second}, [second.key])
    assert set(snap.get(CLUSTER).resources) == {"x.g.ns"}
    assert second.key in t.errors and "already used" in str(t.errors[second.key])


def test_protect_threshold_serves_every_instance_when_too_few_are_healthy() -> None:
    def statuses(s: Service) -> list[str]:
        _, snap = translate(s)
        cla = snap.get(ENDPOINT).resources[s.name].message
        return [health_check_pb2.HealthStatus.Name(e.health_status) for e in cla.endpoints[0].lb_endpoints]

    two_of_three_down = (inst(1), inst(2, healthy=False), inst(3, healthy=False))
    assert statuses(svc("p", *two_of_three_down)) == ["HEALTHY", "UNHEALTHY", "UNHEALTHY"]  # default off
    assert statuses(svc("p", *two_of_three_down, protect_threshold=0.5)) == ["HEALTHY"] * 3
    assert statuses(svc("p", *two_of_three_down, protect_threshold=0.3)) == ["HEALTHY", "UNHEALTHY", "UNHEALTHY"]


def test_instance_priorities_become_contiguous_envoy_priorities() -> None:
    _, snap = translate(svc("echo", inst(9001), inst(9002, priority=5, zone="b"), inst(9003, priority=5),
                            inst(9004, priority=9)))
    cla = snap.get(ENDPOINT).resources["echo"].message  # type: ignore[attr-defined]
    got = [(loc.priority, loc.locality.zone, [e.endpoint.address.socket_address.port_value for e in loc.lb_endpoints])
           for loc in cla.endpoints]
    assert got == [(0, "", [9001]), (1, "", [9003]), (1, "b", [9002]), (2, "", [9004])]


def test_gray_release_becomes_subsets_a_header_route_and_a_weighted_split() -> None:
    gray = {"key": "version", "stable": "v1", "canary": "v2", "header": "x-canary", "canary_weight": 10}
    _, snap = translate(svc("echo", inst(9001, metadata={"version": "v1"}), inst(9002, metadata={"version": "v2"}),
                            gray=gray))
    cluster = snap.get(CLUSTER).resources["echo"].message  # type: ignore[attr-defined]
    assert [list(s.keys) for s in cluster.lb_subset_config.subset_selectors] == [["version"]]
    rc = snap.get(ROUTE).resources["ingress_http"].message  # type: ignore[attr-defined]
    vh = next(v for v in rc.virtual_hosts if v.name == "echo")
    header_route, default_route = vh.routes
    assert header_route.match.headers[0].name == "x-canary" and header_route.match.headers[0].present_match
    assert header_route.route.metadata_match.filter_metadata["envoy.lb"]["version"] == "v2"
    split = [(c.weight.value, c.metadata_match.filter_metadata["envoy.lb"]["version"])
             for c in default_route.route.weighted_clusters.clusters]
    assert split == [(90, "v1"), (10, "v2")]


def test_gray_release_settings_are_validated() -> None:
    import pytest
    from pydantic import ValidationError

    base = {"stable": "v1", "canary": "v2"}
    for bad in ({"stable": "v1", "canary": "v1"}, {**base, "canary_weight": 101}, {**base, "header_value": "1"},
                {**base, "header": "a b"}):
        with pytest.raises(ValidationError):
            svc("echo", gray=bad)


def test_nacos_names_become_safe_distinct_envoy_names() -> None:
    # Nacos accepts colons and more in a name (Dubbo's providers:<interface>:<version>:<group>);
    # Envoy gets a Host-safe name with a hash of the identity, so two such names never meet.
    dubbo = svc("providers:org.demo.DemoService:1.0.0:", inst(1), health_check={"type": "http"})
    twin = svc("providers-org.demo.DemoService-1.0.0-", inst(2))  # safe already: kept as is
    grouped = Service(name="Orders", group="pay:v2", namespace="prod", instances=(inst(3),))
    _, snap = translate(dubbo, twin, grouped)
    clusters = snap.get(CLUSTER).resources
    names = sorted(clusters)
    assert "providers-org.demo.DemoService-1.0.0-" in names
    hashed = [n for n in names if n not in ("providers-org.demo.DemoService-1.0.0-",)]
    assert len(hashed) == 2 and all(n == n.strip() and ":" not in n for n in hashed)
    dubbo_name = next(n for n in hashed if n.startswith("providers-org.demo.DemoService-1.0.0--"))
    assert len(dubbo_name) == len("providers-org.demo.DemoService-1.0.0--") + 8
    assert next(n for n in hashed if n.startswith("Orders.pay-v2.prod-"))
    # the virtual host matches that name, and the health check asks for it
    hc = clusters[dubbo_name].message.health_checks[0]
    assert hc.http_health_check.host == dubbo_name
    vhosts = {vh.name: list(vh.domains) for vh in snap.get(ROUTE).resources["ingress_http"].message.virtual_hosts}
    assert vhosts[dubbo_name] == [dubbo_name, f"{dubbo_name}:*"]
    assert set(snap.get(ENDPOINT).resources) == set(clusters)


def test_service_names_follow_nacos_rules() -> None:
    for good in ("providers:org.demo.DemoService:1.0.0:", "Echo", "a@b", "x" * 512):
        assert svc(good).name == good
    for bad in ("", "@echo", "a@@b", "a b", "tab\there", "x" * 513, "服务"):
        try:
            svc(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")
    for bad_group in ("a b", "a@@b", "a/b", ""):
        try:
            Service(name="echo", group=bad_group)
        except ValueError:
            continue
        raise AssertionError(f"group {bad_group!r} was accepted")


def test_the_route_configuration_joined_from_virtual_host_bytes_is_what_protobuf_serializes() -> None:
    """The translator keeps each virtual host as bytes and joins the route configuration
    from them: the bytes (and so the version) must be the message's own."""
    from envoy.config.route.v3 import route_pb2

    from xdscp.translation.routes import build_virtual_host, route_configuration_payload

    svcs = [Service(name=n, instances=[Instance(host="10.0.0.1", port=80)]) for n in ("a", "b-1", "c")]
    vhosts = [build_virtual_host(s.name, s) for s in svcs]
    expected = route_pb2.RouteConfiguration(name="ingress_http", virtual_hosts=vhosts)
    joined = route_configuration_payload("ingress_http", [v.SerializeToString(deterministic=True) for v in vhosts])
    assert joined == expected.SerializeToString(deterministic=True)
    snap = translator(Config()).update({s.key: s for s in svcs}, [s.key for s in svcs])
    assert snap.get(ROUTE).resources["ingress_http"].message == expected


def test_the_protect_threshold_series_exists_only_while_it_is_in_force() -> None:
    from prometheus_client import REGISTRY

    def series() -> float | None:
        return REGISTRY.get_sample_value("xdscp_protect_threshold_active", {"cluster": "guarded"})

    t = translator(Config())
    down = (inst(1), inst(2, healthy=False), inst(3, healthy=False))
    calm = svc("guarded", inst(1), inst(2), inst(3), protect_threshold=0.5)
    t.update({calm.key: calm}, [calm.key])
    assert series() is None  # a healthy service adds no series: a large registry stays small on /metrics
    hit = svc("guarded", *down, protect_threshold=0.5)
    t.update({hit.key: hit}, [hit.key])
    assert series() == 1.0
    t.update({calm.key: calm}, [calm.key])
    assert series() is None
