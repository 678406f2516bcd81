"""The mesh-lab command: up, status and down for a disposable lab target.

Exit codes: 0 success (status: the lab is up), 2 error, 3 status: the lab is not up.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from mesh_compliance.lab.errors import LabError
from mesh_compliance.lab.lab import DEFAULT_CONSUL_VERSION, DEFAULT_DIR, Lab

logger = logging.getLogger("mesh_compliance.lab")

EXIT_OK = 0
EXIT_ERROR = 2
EXIT_NOT_UP = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mesh-lab",
        description="Run a disposable lab target: PostgreSQL, a Consul double and a seeded target root.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every command at debug level")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start a lab and seed the drifted state")
    _add_dir(up)
    up.add_argument(
        "--consul-version",
        default=DEFAULT_CONSUL_VERSION,
        help=f"Consul version the double reports (default {DEFAULT_CONSUL_VERSION})",
    )
    up.add_argument(
        "--hosts",
        type=int,
        default=0,
        metavar="N",
        help="also start N test hosts reached over SSH, in network namespaces of this machine, and list them in "
             "the site file: odd ones are Files nodes, even ones Proxy nodes, and the first has carbonio-files-db "
             "installed (needs ip netns, unshare and openssh-server; default 0)",
    )

    status = commands.add_parser("status", help="show what runs; exit 0 when up, 3 when not")
    _add_dir(status)
    status.add_argument("--json", action="store_true", help="print the status as JSON")

    down = commands.add_parser("down", help="stop the lab and remove its directory")
    _add_dir(down)
    return parser


def _add_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(DEFAULT_DIR),
        help=f"lab directory (default {DEFAULT_DIR} in the current directory)",
    )


def command_up(args: argparse.Namespace) -> int:
    lab = Lab.up(args.dir, consul_version=args.consul_version, hosts=args.hosts)
    status = lab.status()
    print(f"lab is up in {lab.dir}")
    print(f"  PostgreSQL    {status['postgres']['host']}:{status['postgres']['port']} (pid {status['postgres']['pid']})")
    print(f"  Consul double {lab.consul_url} (pid {status['consul']['pid']})")
    for host in status["hosts"]:
        print(f"  test host     {host['node']} ssh://root@{host['address']}")
    print(f"  site file     {lab.site_file}")
    print(f"  run the suite {Path(sys.executable).parent / 'pytest'} @{lab.paths.pytest_args}")
    return EXIT_OK


def command_status(args: argparse.Namespace) -> int:
    if not args.dir.exists():
        if args.json:
            print(json.dumps({"dir": str(args.dir.absolute()), "up": False, "state": None}))
        else:
            print(f"no lab in {args.dir.absolute()}")
        return EXIT_NOT_UP

    status = Lab.open(args.dir).status()
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        _print_status(status)
    return EXIT_OK if status["up"] else EXIT_NOT_UP


def _print_status(status: dict) -> None:
    postgres = status["postgres"]
    consul = status["consul"]
    print(f"lab {status['dir']}: {'up' if status['up'] else 'not up'} (state {status['state']})")
    print(f"  PostgreSQL    {_running(postgres['running'])} {postgres['host']}:{postgres['port']} pid {postgres['pid']}")
    print(f"  Consul double {_running(consul['listening'])} {consul['url']} pid {consul['pid']}")
    for host in status["hosts"]:
        print(f"  test host     {_running(host['running'])} {host['node']} ssh://root@{host['address']}")


def _running(flag: bool) -> str:
    return "running" if flag else "stopped"


def command_down(args: argparse.Namespace) -> int:
    if not args.dir.exists():
        print(f"no lab in {args.dir.absolute()}; nothing to stop")
        return EXIT_OK

    Lab.open(args.dir).down()
    print(f"lab in {args.dir.absolute()} stopped and removed")
    return EXIT_OK


COMMANDS = {"up": command_up, "status": command_status, "down": command_down}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.DEBUG if args.verbose else logging.WARNING)

    try:
        return COMMANDS[args.command](args)
    except LabError as exc:
        print(f"mesh-lab {args.command}: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
