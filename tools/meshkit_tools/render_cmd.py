# SPDX-License-Identifier: MPL-2.0
"""`meshkit render`: validate a mesh model and print what would be sent to Consul.

The model's parser and renderers live in the Ansible collection's module_utils (so modules,
filters and this command cannot disagree); they are imported from ``ANSIBLE_COLLECTIONS_PATH``,
the checkout's ``collections/``, or the copy the installed distribution carries. Nothing is
contacted: this is the "what exactly would change" view for a review or a CI job.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from meshkit import bounded

_UTILS = "ansible_collections.meshkit.connect.plugins.module_utils"


def collection_roots(environ: dict[str, str] | None = None) -> list[Path]:
    """Directories that may hold ``ansible_collections/meshkit/connect``, in search order."""
    env = os.environ if environ is None else environ
    roots: list[Path] = []
    for entry in env.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep):
        if entry:
            path = Path(entry).expanduser()
            roots.append(path.parent if path.name == "ansible_collections" else path)
    roots.append(Path(__file__).resolve().parents[2] / "collections")
    # A plain `pip install meshkit[controller]` has no checkout: the wheel carries a copy of the
    # collection's module_utils (tools/meshkit_tools/_collection, a symlink in the checkout), so the
    # command works on its own and always with the parser of its own release.
    roots.append(Path(__file__).resolve().parent / "_collection")
    return roots


def load_utils() -> tuple[ModuleType, ModuleType]:
    for root in collection_roots():
        if (root / "ansible_collections" / "meshkit" / "connect").is_dir():
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))
            break
    model = importlib.import_module(f"{_UTILS}.mesh_model")
    render = importlib.import_module(f"{_UTILS}.mesh_render")
    return model, render


def read_vars(paths: list[str]) -> dict[str, Any]:
    """Merge YAML vars files, later ones replacing top-level keys (Ansible's default)."""
    merged: dict[str, Any] = {}
    for name in paths:
        try:
            data = bounded.load_yaml(name)
        except bounded.FileError as err:
            raise InputError(str(err)) from None
        if data is None:
            continue
        if not isinstance(data, dict):
            raise InputError(f"{name}: expected a mapping of variables at the top level")
        merged.update(data)
    return merged


class InputError(Exception):
    """Input that cannot even be parsed into a model."""


def render(model: ModuleType, render_mod: ModuleType, mesh: Any) -> dict[str, Any]:
    """Every rendered form, as plain data (the --json output)."""
    return {
        "datacenter": mesh.datacenter,
        "agent_registrations": [render_mod.agent_registration(s) for s in mesh.services],
        "agent_config_file": render_mod.agent_config_file(mesh.services),
        "prepared_queries": [render_mod.prepared_query_body(q) for q in mesh.prepared_queries],
        "intentions": {
            "config_entries": render_mod.intentions_config_entries(mesh.intentions),
            "legacy": [render_mod.intention_body(i) for i in mesh.intentions],
        },
        "listeners": [
            {"address": x.address, "port": x.port, "owner": x.owner, "kind": x.kind}
            for x in importlib.import_module(f"{_UTILS}.mesh_listeners").host_listeners(
                mesh.services
            )
        ],
    }


def as_text(out: dict[str, Any], config_name: str) -> str:
    def block(title: str, value: Any) -> str:
        body = value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=True)
        return f"# {title}\n{body.rstrip()}\n"

    parts: list[str] = []
    for entry in out.get("config_entries", []):
        parts.append(block(f"{entry['kind']} {entry['name']}: consul_config_entry", entry))
    for body in out["agent_registrations"]:
        title = f"service {body['ID']}: PUT /v1/agent/service/register?replace-existing-checks"
        parts.append(block(title, body))
    parts.append(block(f"agent config file {config_name}", out["agent_config_file"]))
    for body in out["prepared_queries"]:
        parts.append(block(f"prepared query {body['Name']}: POST /v1/query", body))
    for entry in out["intentions"]["config_entries"]:
        parts.append(block(f"intentions to {entry['Name']}: PUT /v1/config", entry))
    listeners = [f"{x['address']}:{x['port']}  {x['owner']}" for x in out["listeners"]]
    parts.append(block("listeners on this host", "\n".join(listeners) or "(none)"))
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="meshkit render",
        description="Validate a mesh model (inventory vars YAML) and print the Consul forms: "
        "agent API bodies, the /etc/consul.d file, prepared queries and intentions. Several "
        "files merge like group_vars then host_vars. Exit 2 listing every problem when invalid.",
    )
    parser.add_argument("files", nargs="+", help="vars files (meshkit_services, ...)")
    parser.add_argument(
        "--known-query",
        action="append",
        default=[],
        metavar="NAME",
        help="a prepared query that exists in Consul outside this model (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document instead of text")
    parser.add_argument(
        "--config-file",
        metavar="PATH",
        help="write only the agent config file to PATH (mode 0644) and print nothing else",
    )
    parser.add_argument(
        "--config-name",
        default="/etc/consul.d/meshkit-services.json",
        help="file name shown in the text output",
    )
    args = parser.parse_args(argv)
    model, render_mod = load_utils()
    try:
        data = read_vars(args.files)
        mesh = model.parse_mesh(data, source=", ".join(args.files), known_queries=args.known_query)
    except InputError as err:
        print(f"meshkit render: {err}", file=sys.stderr)
        return 2
    except model.ModelError as err:
        print(f"meshkit render: {err}", file=sys.stderr)
        return 2
    defaults = importlib.import_module(f"{_UTILS}.mesh_defaults")
    try:
        entries = defaults.config_entries(data, source=", ".join(args.files))
    except model.ModelError as err:
        print(f"meshkit render: {err}", file=sys.stderr)
        return 2
    for warning in mesh.warnings:  # older Consul proxy forms, converted (mesh_legacy.py)
        print(f"meshkit render: warning: {warning}", file=sys.stderr)
    out = render(model, render_mod, mesh)
    out["config_entries"] = entries  # proxy-defaults, service-defaults (consul_config_entry)
    if args.config_file:
        Path(args.config_file).write_text(out["agent_config_file"], encoding="utf-8")
        os.chmod(args.config_file, 0o644)
        return 0
    if args.json:
        sys.stdout.write(json.dumps(out, indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(as_text(out, args.config_name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
