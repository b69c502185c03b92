"""``xdscp serve | worker | validate | status | dump | bootstrap | demo``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from xdscp import __version__
from xdscp.addresses import split_host_port
from xdscp.app import serve_forever
from xdscp.cache.node_group import DEFAULT_GROUP
from xdscp.config import AdminConfig, Config, XdsConfig, load_config
from xdscp.errors import ConfigError, XdscpError
from xdscp.logfmt import configure_logging
from xdscp.sources.kinds import build_sources


def _address(value: str) -> str:
    try:
        split_host_port(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xdscp", description="An xDS control plane for Envoy, fed by service registries.")
    p.add_argument("--version", action="version", version=f"xdscp {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the control plane")
    serve.add_argument("--config", type=Path, help="config file (YAML); defaults apply without one")
    serve.add_argument("--xds-address", type=_address, help="override xds.address (host:port)")
    serve.add_argument("--admin-address", type=_address, help="override admin.address (host:port)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-format", default="logfmt", choices=["logfmt", "json"])
    serve.add_argument("--workers", type=int, help="override xds.workers: processes sharing the xDS port")

    worker = sub.add_parser("worker", help="(started by serve --workers) one follower worker process")
    worker.add_argument("--upstream", type=_address, required=True, help="the owning process's relay port")
    worker.add_argument("--xds-address", type=_address, required=True)
    worker.add_argument("--node-group-by", default=Config().node_group_by)
    worker.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    worker.add_argument("--log-format", default="logfmt", choices=["logfmt", "json"])

    validate = sub.add_parser("validate", help="check a config file and its sources; exit 1 with the reasons")
    validate.add_argument("--config", type=Path, required=True)

    # Listed for --help; its own options are parsed by xdscp.local.demo (see main()).
    sub.add_parser("demo", help="run xdscp, a real Envoy and three upstreams on loopback, with a scripted tour")

    status = sub.add_parser("status", help="connected nodes, what they were sent, ACKed and NACKed; "
                                           "exit 1 while a node rejects its current config")
    status.add_argument("--admin", default=AdminConfig().address, help="xdscp's admin address (host:port or URL)")
    status.add_argument("--json", action="store_true", help="print /debug/nodes as JSON instead of a table")
    status.add_argument("--ca-file", help="CA certificate to trust for an https:// admin address")

    dump = sub.add_parser("dump", help="print the config a node group is served (JSON, like Envoy's config_dump)")
    dump.add_argument("--admin", default=AdminConfig().address, help="xdscp's admin address (host:port or URL)")
    dump.add_argument("--group", default=DEFAULT_GROUP, help="the node group (see node_group_by)")
    dump.add_argument("--type", help="one type: a type URL, or its last part (Cluster, ServiceEntry...)")
    dump.add_argument("--ca-file", help="CA certificate to trust for an https:// admin address")

    sub.add_parser("hash-password", help="read a password on stdin; print its hash for admin.users[].password_hash")

    boot = sub.add_parser("bootstrap", help="print an Envoy bootstrap from envoy/ pointed at a control plane")
    boot.add_argument("--template", type=Path, required=True, help="e.g. envoy/bootstrap-ads.yaml")
    boot.add_argument("--xds-address", type=_address, default=XdsConfig().address)
    boot.add_argument("--admin-port", type=int)
    boot.add_argument("--node-id")
    boot.add_argument("--node-cluster")
    return p


def _load(path: Path | None) -> Config:
    return load_config(path) if path is not None else Config()


def _admin_command(args: argparse.Namespace) -> int:
    from xdscp.cli.admin_client import AdminUnavailable, fetch, status_table

    try:
        if args.command == "status":
            nodes = fetch(args.admin, "/debug/nodes", args.ca_file)["nodes"]
            if args.json:
                print(json.dumps(nodes, indent=2))
                return 0
            table, rejected = status_table(nodes)
            sys.stdout.write(table)
            return 1 if rejected else 0
        query = {"group": args.group} | ({"type": args.type} if args.type else {})
        print(json.dumps(fetch(args.admin, "/debug/config_dump", args.ca_file, **query), indent=2))
        return 0
    except AdminUnavailable as e:
        print(f"xdscp {args.command}: {e}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["demo"]:
        # argparse's REMAINDER drops options after a subcommand, so the demo parses its own.
        from xdscp.local.demo import main as demo_main

        return demo_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "serve":
        configure_logging(args.log_level, args.log_format)
        try:
            cfg = _load(args.config)
        except ConfigError as e:
            print(f"xdscp: invalid config: {e}", file=sys.stderr)
            return 2
        if args.xds_address:
            cfg.xds.address = args.xds_address
        if args.admin_address:
            cfg.admin.address = args.admin_address
        if args.workers is not None:
            if args.workers < 1:
                print("xdscp: --workers must be at least 1", file=sys.stderr)
                return 2
            cfg.xds.workers = args.workers
        import uvloop

        try:
            uvloop.run(serve_forever(cfg))
        except XdscpError as e:
            print(f"xdscp: {e}", file=sys.stderr)
            return 1
        return 0
    if args.command == "worker":
        configure_logging(args.log_level, args.log_format)
        import uvloop

        from xdscp.workers.follower import run_follower

        try:
            from xdscp.workers.pool import SETTINGS_ENV

            settings = json.loads(os.environ.get(SETTINGS_ENV, "{}"))
            uvloop.run(run_follower(args.upstream, args.xds_address, args.node_group_by, settings))
        except XdscpError as e:
            print(f"xdscp worker: {e}", file=sys.stderr)
            return 1
        return 0
    if args.command == "validate":
        try:
            cfg = load_config(args.config)
            sources = build_sources(cfg)
        except ConfigError as e:
            print(f"config {args.config}: {e}", file=sys.stderr)
            return 1
        failed = False
        for src in sources:
            problems = src.check()
            for problem in problems:
                print(f"source {src.name} ({src.kind}): {problem}", file=sys.stderr)
            failed |= bool(problems)
            src.close()
        if failed:
            return 1
        print(f"config {args.config}: ok ({len(cfg.sources)} source(s))")
        return 0
    if args.command in ("status", "dump"):
        return _admin_command(args)
    if args.command == "hash-password":
        from xdscp.admin.credentials import hash_password

        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            print("xdscp hash-password: give the password on stdin", file=sys.stderr)
            return 2
        print(hash_password(password))
        return 0
    if args.command == "bootstrap":
        import yaml

        from xdscp.cli.bootstrap import render_bootstrap

        doc = render_bootstrap(args.template, args.xds_address, args.admin_port, args.node_id, args.node_cluster)
        sys.stdout.write(yaml.safe_dump(doc, sort_keys=False))
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands
