# SPDX-License-Identifier: MPL-2.0
"""`meshkit nomad render|plan|run`: the nomad_job module's sequence from a shell or CI.

Exit codes follow nomad-pack's plan: 0 no change, 1 changes planned (plan), 255 error; an
input file that cannot be read (not UTF-8, too large, too deep, an alias bomb) is 2, like every
other meshkit command given a bad file.
`run` exits 0 once the job is registered (and its deployment healthy, unless --no-wait).
The token comes from NOMAD_TOKEN or --token-file, never from a flag (ps would show it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from meshkit import bounded
from meshkit_tools.nomad_byo_cmd import EXIT_ERROR, EXIT_OK, print_outcome
from meshkit_tools.render_cmd import InputError, collection_roots, read_vars

EXIT_BAD_FILE = 2


def _collections_on_path() -> None:
    """Import the collection's module_utils the way `meshkit render` finds them."""
    for base in collection_roots():
        if (base / "ansible_collections" / "meshkit" / "connect").is_dir():
            if str(base) not in sys.path:
                sys.path.insert(0, str(base))
            return
    raise SystemExit(
        "meshkit nomad: the meshkit.connect collection was not found on "
        "ANSIBLE_COLLECTIONS_PATH or next to this checkout"
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meshkit nomad", description=__doc__.splitlines()[0])
    p.add_argument("action", choices=("render", "plan", "run"))
    p.add_argument(
        "--mesh",
        required=True,
        action="append",
        help="YAML vars file with the mesh model (repeatable; later files win per key)",
    )
    p.add_argument("--job", type=Path, help="YAML with the job settings")
    p.add_argument(
        "--job-file",
        type=Path,
        help="your own Nomad job (HCL or API JSON) whose services ask for meshkit with "
        "meta { meshkit = ... }; --job then holds only nomad_version and proxy",
    )
    p.add_argument("--format", choices=("hcl", "json"), default="hcl", help="render output")
    p.add_argument("--nomad-version", default="auto", help="cluster version, or auto (ask it)")
    p.add_argument("--address", help="default: NOMAD_ADDR, then http://127.0.0.1:4646")
    p.add_argument("--token-file", type=Path, help="file holding the ACL token")
    p.add_argument("--namespace")
    p.add_argument("--region")
    p.add_argument("--ca-cert", help="CA bundle for the server (default NOMAD_CACERT)")
    p.add_argument("--client-cert")
    p.add_argument("--client-key")
    p.add_argument(
        "--tls-skip-verify", action="store_true", help="do not verify the server (test only)"
    )
    p.add_argument("--no-wait", action="store_true", help="run: do not wait for the deployment")
    p.add_argument("--wait-timeout", type=float, default=300.0)
    p.add_argument("--poll-interval", type=float, default=1.0, help=argparse.SUPPRESS)
    return p


def _load_yaml(path: Path, what: str) -> dict[str, Any]:
    try:
        data = bounded.load_yaml(path) or {}
    except bounded.FileError as exc:
        raise InputError(f"{exc.path}: the {what}: {exc.problem}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the {what} must be a YAML mapping")
    return data


def run(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    _collections_on_path()
    from ansible_collections.meshkit.connect.plugins.module_utils import nomad_submit as ns
    from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import (
        parse_mesh,
    )
    from ansible_collections.meshkit.connect.plugins.module_utils.model_fields import (
        ModelError,
    )
    from ansible_collections.meshkit.connect.plugins.module_utils.nomad_jobspec import build_job
    from ansible_collections.meshkit.connect.plugins.module_utils.nomad_render import (
        hcl_syntax,
        to_api,
        to_hcl,
        to_json,
    )
    from ansible_collections.meshkit.connect.plugins.module_utils.nomad_settings import (
        parse_job_settings,
        version_request,
    )

    try:
        mesh_data = read_vars(args.mesh)
        if args.job is None and args.job_file is None:
            raise ValueError("give --job (job settings) or --job-file (your own job), or both")
        job_data = _load_yaml(args.job, "job settings") if args.job else {}
        token = ""
        if args.token_file:
            token = bounded.read_text(args.token_file).strip()
        conn = ns.connection_from(
            address=args.address,
            token=token or None,
            namespace=args.namespace or job_data.get("namespace"),
            region=args.region,
            validate_certs=not args.tls_skip_verify,
            ca_cert=args.ca_cert,
            client_cert=args.client_cert,
            client_key=args.client_key,
        )
        if args.job_file is not None:
            from meshkit_tools.nomad_byo_cmd import run_job_file

            return run_job_file(args, mesh_data, job_data, conn)
        nomad: Any = None
        version: str | None = version_request(args.nomad_version, job_data.get("nomad_version"))
        if args.action == "render":
            version = None if version == "auto" else version
        else:
            nomad = ns.client(conn)
            if version == "auto":
                version = ns.detect_version(nomad, conn)
        mesh = parse_mesh(mesh_data, source=", ".join(args.mesh))
        settings = parse_job_settings(job_data, source=str(args.job), nomad_version=version)
        spec = build_job(mesh, settings)
        if args.action == "render":
            hcl = to_hcl(spec, hcl_syntax(settings.nomad_version))
            sys.stdout.write(hcl if args.format == "hcl" else to_json(spec))
            return EXIT_OK
        job = to_api(spec)
        outcome = ns.apply(
            nomad,
            conn,
            job,
            check_mode=args.action == "plan",
            wait_for_deployment=not args.no_wait,
            wait_timeout=args.wait_timeout,
            interval=args.poll_interval,
        )
    except (InputError, bounded.FileError) as exc:
        print(f"meshkit nomad: {exc}", file=sys.stderr)
        return EXIT_BAD_FILE
    except (ModelError, ValueError, OSError) as exc:
        print(f"meshkit nomad: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ns.NomadSubmitError as exc:
        print(f"meshkit nomad: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return print_outcome(outcome, args.action)


def main(argv: Sequence[str] | None = None) -> int:
    return run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
