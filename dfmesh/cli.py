"""`dfmesh`: run the embedded mesh on loopback and analyze files through it.

    dfmesh up [--port NAME=PORT ...] [--only NAME ...]   start every service, wait for SERVING
    dfmesh status                                         health of each service
    dfmesh down                                           stop them cleanly (SIGTERM, drain)
    dfmesh analyze FILE ... [--json]                      send files through the mesh
"""

from __future__ import annotations

import argparse
import sys

from dfmesh import mesh


def _parse_ports(values: list[str]) -> dict[str, int]:
    ports = {}
    for item in values:
        name, _, port = item.partition("=")
        if name not in mesh.START_ORDER or not port.isdigit():
            names = ", ".join(mesh.START_ORDER)
            raise SystemExit(f"--port expects NAME=PORT with NAME one of {names}")
        ports[name] = int(port)
    return ports


def cmd_up(args: argparse.Namespace) -> int:
    try:
        processes, status = mesh.start_mesh(_parse_ports(args.port), timeout=args.timeout,
                                            only=args.only or None)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    width = max(len(p.name) for p in processes)
    for p in processes:
        where = f"http://127.0.0.1:{p.port}" if p.name == "gateway" else f"127.0.0.1:{p.port}"
        print(f"{p.name:<{width}}  {status[p.name]:<12} {where:<24} log: {p.log}")
    failed = [n for n, s in status.items() if s != "SERVING"]
    if failed:
        print(f"error: not serving: {', '.join(failed)}; see the logs above; "
              "`dfmesh down` stops the rest", file=sys.stderr)
        return 1
    print("mesh is up; `dfmesh analyze FILE` to analyze, `dfmesh down` to stop")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    outcome = mesh.stop_mesh(grace=args.grace)
    if not outcome:
        print("no mesh is running")
    for name, result in outcome:
        print(f"{name}: {result}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    rows = mesh.mesh_status()
    for name, port, state in rows:
        print(f"{name:<10} {port:<6} {state}")
    return 0 if rows and all(s == "SERVING" for _, _, s in rows) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dfmesh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start every service on loopback and wait for SERVING")
    up.add_argument("--port", action="append", default=[], metavar="NAME=PORT")
    up.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="start only these services (repeatable)")
    up.add_argument("--timeout", type=float, default=180.0)
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="stop the mesh (SIGTERM, then drain)")
    down.add_argument("--grace", type=float, default=25.0)
    down.set_defaults(func=cmd_down)
    status = sub.add_parser("status", help="health of each service")
    status.set_defaults(func=cmd_status)
    try:
        from dfmesh import cli_analyze
    except ImportError:  # an install without the client's extras: no `analyze`
        pass
    else:
        cli_analyze.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
