# SPDX-License-Identifier: MPL-2.0
"""`meshkit nomad render|plan|run --job-file FILE`: an operator's own job, meshkit filled in.

The file is HCL or API JSON; services marked `meta { meshkit = "..." }` get meshkit's parts
(docs/nomad.md, "Bring your own job"). `render` works offline: HCL is read with python-hcl2
and written back with only meshkit's blocks added, for the target version's HCL syntax.
`plan`/`run` send Nomad the job as Nomad's own `jobs/parse` reads the file, with meshkit's
parts merged, through the same plan -> register -> wait sequence as a model-rendered job.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXIT_OK, EXIT_CHANGES, EXIT_ERROR = 0, 1, 255


def run_job_file(
    args: argparse.Namespace, mesh_data: dict[str, Any], job_data: dict[str, Any], conn: Any
) -> int:
    from ansible_collections.meshkit.connect.plugins.module_utils import nomad_byo
    from ansible_collections.meshkit.connect.plugins.module_utils import nomad_submit as ns
    from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import parse_mesh
    from ansible_collections.meshkit.connect.plugins.module_utils.nomad_render import hcl_syntax
    from ansible_collections.meshkit.connect.plugins.module_utils.nomad_settings import (
        version_request,
    )

    source = str(args.job_file)
    text = nomad_byo.read_job_file(source)
    version: str | None = version_request(args.nomad_version, job_data.get("nomad_version"))
    nomad: Any = None
    if args.action == "render":
        if version == "auto":
            version = None
            print(
                "note: render asks no agent; nomad_version auto is checked as the default "
                "version (pass --nomad-version for the cluster's)",
                file=sys.stderr,
            )
    else:
        nomad = ns.client(conn)
        if version == "auto":
            version = ns.detect_version(nomad, conn)
    mesh = parse_mesh(mesh_data, source=", ".join(args.mesh))
    read_settings = nomad_byo.settings_reader(job_data, str(args.job or "job settings"), version)
    settings_seen: list[Any] = []

    def settings_for(job_id: str) -> Any:
        settings_seen.append(read_settings(job_id))
        return settings_seen[-1]

    job = nomad_byo.load(text, source, mesh, settings_for)
    if args.action == "render":
        if job.form == "json":
            sys.stdout.write(
                json.dumps(
                    {"Job": nomad_byo.merge_api(job.api or {}, job)}, indent=2, sort_keys=True
                )
                + "\n"
            )
        elif args.format == "json":
            raise ValueError(
                f"{source}: an HCL job file renders as HCL offline (the JSON form needs "
                "Nomad's jobs/parse); use --format hcl, or `meshkit nomad plan` to see the job"
            )
        else:
            sys.stdout.write(nomad_byo.render_hcl(job, hcl_syntax(settings_seen[-1].nomad_version)))
        return EXIT_OK
    api = nomad_byo.job_for_nomad(nomad, conn, job)
    outcome = ns.apply(
        nomad,
        conn,
        api,
        check_mode=args.action == "plan",
        wait_for_deployment=not args.no_wait,
        wait_timeout=args.wait_timeout,
        interval=args.poll_interval,
    )
    return print_outcome(outcome, args.action)


def print_outcome(outcome: Any, action: str) -> int:
    """The plan's diff on stdout, notes on stderr, the result as one JSON line; the exit code
    (plan: 1 when it would change something, as nomad-pack's plan). Shared by both job paths."""
    from ansible_collections.meshkit.connect.plugins.module_utils.nomad_submit import format_diff

    assert outcome.plan is not None
    sys.stdout.write(format_diff(outcome.plan.diff))
    for message in outcome.messages:
        print(f"note: {message}", file=sys.stderr)
    result = outcome.result()
    result.pop("plan", None)
    print(json.dumps(result, sort_keys=True))
    if action == "plan":
        return EXIT_CHANGES if outcome.changed else EXIT_OK
    return EXIT_OK
