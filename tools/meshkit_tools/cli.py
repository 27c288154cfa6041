# SPDX-License-Identifier: MPL-2.0
"""`meshkit`: one command for the controller-side tools.

Subcommands load lazily so `meshkit-proxy` hosts never import controller dependencies
(ansible, python-nomad, jinja2) just because this entry point exists.
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "dev-agent": (
        "meshkit_tools.devagent.main",
        "run the development control plane (a Consul-API server)",
    ),
    "render": ("meshkit_tools.render_cmd", "validate a mesh model and render Consul / Nomad forms"),
    "nomad": ("meshkit_tools.nomad_cmd", "plan or run the Nomad jobs of a mesh model"),
    "lab": ("meshkit_tools.lab.cli", "local lab machines (systemd-nspawn) for trials and Molecule"),
    "demo": ("meshkit_tools.demo", "roll a two-service demo mesh out to lab machines"),
}


def usage() -> str:
    lines = ["usage: meshkit <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, (_, text) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    if args[0] in ("-v", "--version", "version"):
        from meshkit import __version__

        print(f"meshkit {__version__}")
        return 0
    entry = SUBCOMMANDS.get(args[0])
    if entry is None:
        print(f"meshkit: unknown command {args[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(entry[0])
    result: int = module.main(args[1:])
    return result


if __name__ == "__main__":
    sys.exit(main())
