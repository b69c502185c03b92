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
from xdscp.cli import exit_codes
from xdscp.config import AdminConfig, Config, XdsConfig, load_config
from xdscp.errors import ConfigError, XdscpError
from xdscp.logfmt import configure_logging


def _address(value: str) -> str:
    try:
        split_host_port(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


COMMANDS = "{serve,validate,status,dump,bootstrap,demo,hash-password}"  # what --help lists (not worker)


class _Help(argparse.HelpFormatter):
    """Every option's default shown in --help (options without one, and flags, say nothing)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and action.option_strings:
            help += " (default: %(default)s)"
        return help


def _command(sub: argparse._SubParsersAction, name: str, help: str | None, description: str | None = None
             ) -> argparse.ArgumentParser:
    if help is None:  # no help: left out of the listing
        return sub.add_parser(name, description=description, formatter_class=_Help)
    return sub.add_parser(name, help=help, description=description or help, formatter_class=_Help)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xdscp", description="An xDS control plane for Envoy, fed by service registries.",
        epilog=f"exit codes: {exit_codes.OK} success; {exit_codes.FAILED} what was checked is wrong (validate, "
               f"status) or serve could not start; {exit_codes.USAGE} could not run as asked (bad arguments or "
               f"input, admin API away)")
    p.add_argument("--version", action="version", version=f"xdscp {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar=COMMANDS)
    levels = ["debug", "info", "warning", "error"]

    serve = _command(sub, "serve", "run the control plane")
    serve.add_argument("--config", type=Path, help="config file (YAML); without one, every default applies "
                                                   "(the embedded registry)")
    serve.add_argument("--xds-address", type=_address, help="override xds.address (host:port)")
    serve.add_argument("--admin-address", type=_address, help="override admin.address (host:port)")
    serve.add_argument("--log-level", default="info", choices=levels, help="the least severe event logged")
    serve.add_argument("--log-format", default="logfmt", choices=["logfmt", "json"], help="one event per line, as")
    serve.add_argument("--workers", type=int, help="override xds.workers: processes sharing the xDS port")

    # Internal: started by ``serve --workers``, so it is not listed.
    worker = _command(sub, "worker", None, "one follower worker process (started by serve --workers)")
    worker.add_argument("--upstream", type=_address, required=True, help="the owning process's relay port")
    worker.add_argument("--xds-address", type=_address, required=True, help="the shared xDS address")
    worker.add_argument("--node-group-by", default=Config().node_group_by, help="as node_group_by")
    worker.add_argument("--log-level", default="info", choices=levels, help="the least severe event logged")
    worker.add_argument("--log-format", default="logfmt", choices=["logfmt", "json"], help="one event per line, as")

    validate = _command(sub, "validate", "check a config file, then read every source once; one line per source",
                        f"Check a config file, then read every source once as serve would (nothing is written). "
                        f"Exit {exit_codes.FAILED} if the config or any source fails.")
    validate.add_argument("--config", type=Path, required=True, help="the config file (YAML)")
    validate.add_argument("--timeout", type=float, default=5.0, help="seconds each source gets to answer")
    validate.add_argument("--offline", action="store_true",
                          help="skip the sources that reach a server (http, etcd, nacos, consul, zookeeper, "
                               "the embedded registry's etcd store)")

    status = _command(sub, "status", "every connected proxy: per type, the version sent and ACKed, and NACKs",
                      f"Every open xDS stream: per type, the version sent, the version the proxy holds (ACKed, "
                      f"or kept after a NACK), and its NACKs. Exit {exit_codes.FAILED} while a proxy rejects the "
                      f"config it was last sent, {exit_codes.USAGE} if the admin API cannot be read.")
    status.add_argument("--admin", default=AdminConfig().address, help="xdscp's admin address (host:port or URL)")
    status.add_argument("--json", action="store_true", help="print /debug/nodes as JSON instead of a table")
    status.add_argument("--ca-file", help="CA certificate to trust for an https:// admin address")

    dump = _command(sub, "dump", "print the config a node group is served (JSON, like Envoy's config_dump)",
                    f"Print the config a node group is served, decoded from the bytes on the wire. Exit "
                    f"{exit_codes.USAGE} if the admin API cannot be read or the type is not served.")
    dump.add_argument("--admin", default=AdminConfig().address, help="xdscp's admin address (host:port or URL)")
    dump.add_argument("--group", help="the node group (see node_group_by); default: the one group connected, "
                                      f"else {DEFAULT_GROUP!r}")
    dump.add_argument("--type", help="one type: a type URL, or its last part (Cluster, ServiceEntry...); "
                                     "default: every type")
    dump.add_argument("--locality", help="REGION/ZONE: what a node in that locality is served (its "
                                         "assignments by distance); default: a node without a locality")
    dump.add_argument("--ca-file", help="CA certificate to trust for an https:// admin address")

    boot = _command(sub, "bootstrap", "print an Envoy bootstrap from envoy/ pointed at a control plane")
    boot.add_argument("--template", type=Path, required=True, help="a bootstrap to start from, e.g. "
                                                                   "envoy/bootstrap-ads.yaml")
    boot.add_argument("--xds-address", type=_address, default=XdsConfig().address,
                      help="where the bootstrap's xdscp cluster points (host:port)")
    boot.add_argument("--admin-port", type=int, help="Envoy's admin port; default: the template's")
    boot.add_argument("--node-id", help="node.id; default: the template's")
    boot.add_argument("--node-cluster", help="node.cluster (xdscp's node group by default); default: the template's")

    # Listed for --help; its own options are parsed by xdscp.local.demo (see main()).
    _command(sub, "demo", "run xdscp, a real Envoy and three upstreams on loopback, with a scripted tour")
    _command(sub, "hash-password", "read a password on stdin; print its hash for admin.users[].password_hash")
    return p


def _load(path: Path | None) -> Config:
    return load_config(path) if path is not None else Config()


def _admin_command(args: argparse.Namespace) -> int:
    from xdscp.cli.admin_client import AdminUnavailable, dump_config, fetch, status_table

    try:
        if args.command == "status":
            nodes = fetch(args.admin, "/debug/nodes", args.ca_file)["nodes"]
            if args.json:
                print(json.dumps(nodes, indent=2))
                return exit_codes.OK
            table, rejected = status_table(nodes)
            sys.stdout.write(table)
            return exit_codes.FAILED if rejected else exit_codes.OK
        dump, note = dump_config(args.admin, args.ca_file, args.group, args.type, args.locality)
        if note:
            print(f"xdscp dump: {note}", file=sys.stderr)
        print(json.dumps(dump, indent=2))
        return exit_codes.OK
    except AdminUnavailable as e:
        print(f"xdscp {args.command}: {e}", file=sys.stderr)
        return exit_codes.USAGE


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["demo"]:
        # argparse's REMAINDER drops options after a subcommand, so the demo parses its own.
        from xdscp.local.demo import main as demo_main

        return demo_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
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
            return exit_codes.FAILED
        return exit_codes.OK
    if args.command == "validate":
        from xdscp.cli.validate import validate

        if args.timeout <= 0:
            print("xdscp validate: --timeout must be more than 0", file=sys.stderr)
            return exit_codes.USAGE
        return validate(args.config, args.timeout, args.offline)
    if args.command in ("status", "dump"):
        return _admin_command(args)
    if args.command == "hash-password":
        from xdscp.credentials import hash_password

        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            print("xdscp hash-password: give the password on stdin", file=sys.stderr)
            return exit_codes.USAGE
        print(hash_password(password))
        return exit_codes.OK
    if args.command == "bootstrap":
        import yaml

        from xdscp.local.envoy_bootstrap import render_bootstrap

        try:
            doc = render_bootstrap(args.template, args.xds_address, args.admin_port, args.node_id, args.node_cluster)
        except ConfigError as e:
            print(f"xdscp bootstrap: {e}", file=sys.stderr)
            return exit_codes.USAGE
        sys.stdout.write(yaml.safe_dump(doc, sort_keys=False))
        return exit_codes.OK
    return exit_codes.USAGE  # pragma: no cover - argparse rejects unknown commands


def _serve(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, args.log_format)
    try:
        cfg = _load(args.config)
    except ConfigError as e:
        print(f"xdscp: invalid config: {e}", file=sys.stderr)
        return exit_codes.USAGE
    if args.xds_address:
        cfg.xds.address = args.xds_address
    if args.admin_address:
        cfg.admin.address = args.admin_address
    if args.workers is not None:
        if args.workers < 1:
            print("xdscp: --workers must be at least 1", file=sys.stderr)
            return exit_codes.USAGE
        cfg.xds.workers = args.workers
    import uvloop

    try:
        uvloop.run(serve_forever(cfg))
    except XdscpError as e:
        print(f"xdscp: {e}", file=sys.stderr)
        return exit_codes.FAILED
    return exit_codes.OK
