# SPDX-License-Identifier: MPL-2.0
"""An HTTP double of the Nomad API, shaped by the recorded Nomad 0.11.8 responses.

No Nomad binary can run here, so this serves the endpoints our submission path uses over a
real loopback socket (optionally TLS), with the recorded bodies as templates: jobs parse,
plan with diff, register with EnforceIndex/JobModifyIndex, job, allocations, deployments,
evaluations, summary, stop/purge. Tests steer it through attributes (deployment outcome,
a concurrent writer after plan) and read `requests` to see what was sent.
"""

from __future__ import annotations

import copy
import json
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.nomad_hcl import UnknownField, parse_job

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "nomad-0.11.8"
if not FIXTURES.is_dir():  # the checkout may live elsewhere; the fixtures sit beside /work/main
    FIXTURES = Path("/work/shared/fixtures/nomad-0.11.8")


DERIVED = Path(__file__).resolve().parents[1] / "nomad" / "fixtures" / "nomad-0.11.8-derived"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def derived_parse_fixtures() -> list[dict[str, Any]]:
    """`jobs/parse` answers derived for given HCL (see that directory's README)."""
    return [json.loads(p.read_text()) for p in sorted(DERIVED.glob("p*.json"))]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class StoredJob:
    job: dict[str, Any]
    versions: list[dict[str, Any]] = field(default_factory=list)


def _diff_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _field_diffs(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """Nomad-shaped Fields and Objects for two flat-ish maps (scalars vs nested values)."""
    fields: list[dict[str, Any]] = []
    objects: list[dict[str, Any]] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        nested = isinstance(a, dict | list) or isinstance(b, dict | list)
        kind = "Added" if a is None else "Deleted" if b is None else "Edited"
        if nested:
            oa = _flatten(a)
            ob = _flatten(b)
            sub_fields, _ = _field_diffs(oa, ob)
            objects.append({"Type": kind, "Name": key, "Fields": sub_fields, "Objects": None})
        else:
            fields.append(
                {
                    "Type": kind,
                    "Name": key,
                    "Old": _diff_value(a),
                    "New": _diff_value(b),
                    "Annotations": None,
                }
            )
    return fields, objects


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}[{i}]"))
    elif value is not None:
        out[prefix or "value"] = value
    return out


_JOB_BOOKKEEPING = {
    "CreateIndex",
    "ModifyIndex",
    "JobModifyIndex",
    "SubmitTime",
    "Status",
    "StatusDescription",
    "Stable",
    "Version",
}


def job_diff(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """A JobDiff like Nomad's `plan?diff=true`: Type None/Added/Edited plus field changes."""
    if old is None:
        fields, objects = _field_diffs({}, _scalars(new))
        groups = [
            {"Type": "Added", "Name": g["Name"], "Fields": [], "Objects": [], "Tasks": []}
            for g in new.get("TaskGroups") or []
        ]
        return {
            "Type": "Added",
            "ID": new["ID"],
            "Fields": fields,
            "Objects": objects,
            "TaskGroups": groups,
        }
    fields, objects = _field_diffs(_scalars(old), _scalars(new))
    old_groups = {g["Name"]: g for g in old.get("TaskGroups") or []}
    new_groups = {g["Name"]: g for g in new.get("TaskGroups") or []}
    groups = []
    for name in sorted(set(old_groups) | set(new_groups)):
        a, b = old_groups.get(name), new_groups.get(name)
        if a == b:
            continue
        kind = "Added" if a is None else "Deleted" if b is None else "Edited"
        g_fields, g_objects = _field_diffs(_flatten(a or {}), _flatten(b or {}))
        groups.append(
            {"Type": kind, "Name": name, "Fields": g_fields, "Objects": g_objects, "Tasks": []}
        )
    changed = bool(fields or objects or groups)
    return {
        "Type": "Edited" if changed else "None",
        "ID": new["ID"],
        "Fields": fields,
        "Objects": objects,
        "TaskGroups": groups,
    }


def _scalars(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if k != "TaskGroups" and k not in _JOB_BOOKKEEPING}


class NomadDouble:
    """State and behaviour; `serve()` puts it on a loopback port."""

    def __init__(self, *, version: str = "1.7.7") -> None:
        self.version = version
        self.index = 100
        self.jobs: dict[str, StoredJob] = {}
        self.evals: dict[str, dict[str, Any]] = {}
        self.allocs: dict[str, dict[str, Any]] = {}
        self.deployments: dict[str, dict[str, Any]] = {}
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        # Steering knobs for tests.
        self.deployment_outcome: dict[str, str] = {}  # job -> successful | failed | stuck
        self.polls_before_done = 1  # deployment reads that still say "running"
        self.bump_after_plan: set[str] = set()  # jobs someone else re-registers after a plan
        self.missing_drivers: set[str] = set()  # drivers no client has (plan FailedTGAllocs)
        self.token: str | None = None  # when set, requests without it get 403
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.address = ""

    # --- lifecycle -----------------------------------------------------------------------

    def serve(self, tls: ssl.SSLContext | None = None) -> str:
        double = self

        class Handler(_Handler):
            owner = double

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        scheme = "https" if tls else "http"
        self.address = f"{scheme}://127.0.0.1:{server.server_address[1]}"
        return self.address

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def writes(self) -> list[Request]:
        """Requests that change state (register, stop), not plans or reads."""
        return [
            r
            for r in self.requests
            if (r.method in ("POST", "PUT") and (r.path == "/v1/jobs" or _is_job_path(r.path)))
            or r.method == "DELETE"
        ]

    # --- behaviour -----------------------------------------------------------------------

    def next_index(self) -> int:
        self.index += 1
        return self.index

    def agent_self(self) -> dict[str, Any]:
        body: dict[str, Any] = fixture("n01-nomad-agent-self.json")
        body["config"]["Version"]["Version"] = self.version
        return body

    @property
    def hcl_syntax(self) -> str:
        """How this Nomad reads job files: HCL1 before 1.0, HCL2 from 1.0 on."""
        major = int(self.version.split(".")[0])
        return "hcl2" if major >= 1 else "hcl1"

    def parse(self, body: dict[str, Any]) -> tuple[int, Any]:
        """The recorded countapi answer; else a derived answer stored in tests/nomad/fixtures
        for this HCL and this Nomad's syntax; else one derived now (same reader)."""
        text = body.get("JobHCL")
        if not isinstance(text, str):
            return 400, "JobHCL must be set"
        recorded = fixture("requests/nomad-parse.json")
        if text == recorded["JobHCL"]:
            return 200, fixture("n03-nomad-jobs-parse.json")
        for stored in derived_parse_fixtures():
            if stored["request"]["JobHCL"] == text and stored["syntax"] == self.hcl_syntax:
                return 200, copy.deepcopy(stored["answer"])
        try:
            return 200, parse_job(text, self.hcl_syntax)
        except UnknownField as exc:
            return 400, f"double: the derived jobs/parse does not model {exc}"
        except Exception as exc:  # python-hcl2's syntax errors: Nomad answers 400 too
            return 400, f"error parsing: {str(exc).splitlines()[0] if str(exc) else exc!r}"

    def plan(self, job_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        job = body.get("Job") or {}
        if job.get("ID") != job_id:
            return 400, "Job ID does not match"
        stored = self.jobs.get(job_id)
        live = stored.job if stored and not stored.job.get("Stop") else None
        plan = fixture("n04-nomad-job-plan.json")
        plan["JobModifyIndex"] = stored.job["JobModifyIndex"] if stored else 0
        diff = job_diff(_canonical(live) if live else None, _canonical(job))
        if stored and stored.job.get("Stop"):
            diff["Type"] = "Edited"
        plan["Diff"] = diff if body.get("Diff") else None
        plan["Annotations"]["DesiredTGUpdates"] = {
            g["Name"]: {
                **_tg_updates(),
                "Place": g.get("Count", 1) if diff["Type"] != "None" else 0,
            }
            for g in job.get("TaskGroups") or []
        }
        plan["FailedTGAllocs"] = self.unplaceable(job) or None
        plan["CreatedEvals"] = None
        if job_id in self.bump_after_plan and stored is not None:
            self.bump_after_plan.discard(job_id)
            self._store(copy.deepcopy(stored.job), external=True)
        return 200, plan

    def unplaceable(self, job: dict[str, Any]) -> dict[str, Any]:
        """Groups no client can run (a driver in `missing_drivers`), as FailedTGAllocs."""
        failed = {}
        recorded = fixture("n12-nomad-plan-default-envoy-sidecar.json")["FailedTGAllocs"]["api"]
        for g in job.get("TaskGroups") or []:
            drivers = {t.get("Driver") for t in g.get("Tasks") or []}
            if drivers & self.missing_drivers:
                failed[g["Name"]] = recorded
        return failed

    def register(self, body: dict[str, Any], path_id: str | None) -> tuple[int, Any]:
        job = body.get("Job")
        if not isinstance(job, dict) or not job.get("ID"):
            return 400, "Job ID must be set"
        if path_id is not None and path_id != job["ID"]:
            return 400, "Job ID does not match name"
        stored = self.jobs.get(job["ID"])
        if body.get("EnforceIndex"):
            want = int(body.get("JobModifyIndex") or 0)
            current = stored.job["JobModifyIndex"] if stored else 0
            prefix = f"Enforcing job modify index {want}"
            if want == 0 and stored is not None:
                return 500, f"{prefix}: job already exists"
            if want != 0 and stored is None:
                return 500, f"{prefix}: job does not exist"
            if want != current:
                return 500, f"{prefix}: job exists with conflicting job modify index: {current}"
        return 200, self._store(job)

    def _store(self, job: dict[str, Any], external: bool = False) -> dict[str, Any]:
        job = copy.deepcopy(job)
        index = self.next_index()
        stored = self.jobs.get(job["ID"])
        version = (stored.job["Version"] + 1) if stored else 0
        job.update(
            {
                "Version": version,
                "JobModifyIndex": index,
                "ModifyIndex": index,
                "CreateIndex": stored.job["CreateIndex"] if stored else index,
                "Status": "running" if job.get("Type") != "batch" else "pending",
                "Stop": False,
                "Stable": False,
                "Namespace": job.get("Namespace") or "default",
                "Type": job.get("Type") or "service",
            }
        )
        if stored is None:
            stored = StoredJob(job)
            self.jobs[job["ID"]] = stored
        stored.job = job
        stored.versions.append(job)
        eval_id = str(uuid.uuid4())
        self.evals[eval_id] = {
            "ID": eval_id,
            "JobID": job["ID"],
            "Status": "complete",
            "Type": job["Type"],
            "TriggeredBy": "job-register",
            "FailedTGAllocs": self.unplaceable(job) or None,
            "BlockedEval": str(uuid.uuid4()) if self.unplaceable(job) else "",
            "CreateIndex": index,
            "ModifyIndex": index,
        }
        if not external:
            self._place(job, eval_id)
        register: dict[str, Any] = fixture("n05-nomad-jobs-register.json")
        register.update(
            {"EvalID": eval_id, "EvalCreateIndex": index, "JobModifyIndex": index, "Index": index}
        )
        return register

    def _place(self, job: dict[str, Any], eval_id: str) -> None:
        outcome = self.deployment_outcome.get(job["ID"], "successful")
        # Like Nomad: a service group without an update block (its own or the job's) gets the
        # default one (MaxParallel 1), so only MaxParallel 0 means no deployment.
        wants_deployment = job["Type"] == "service" and any(
            g.get("Count", 1) > 0
            and {**(job.get("Update") or {}), **(g.get("Update") or {})}.get("MaxParallel", 1) > 0
            for g in job.get("TaskGroups") or []
        )
        deployment_id = str(uuid.uuid4()) if wants_deployment else ""
        template = fixture("n06-nomad-job-allocations.json")[0]
        states: dict[str, Any] = {}
        failed_alloc = ""
        unplaceable = self.unplaceable(job)
        for g in job.get("TaskGroups") or []:
            if g["Name"] in unplaceable:
                continue
            placed = healthy = unhealthy = 0
            for i in range(g.get("Count", 1)):
                alloc = copy.deepcopy(template)
                alloc_id = str(uuid.uuid4())
                bad = outcome == "failed" and not failed_alloc
                alloc.update(
                    {
                        "ID": alloc_id,
                        "EvalID": eval_id,
                        "Name": f"{job['ID']}.{g['Name']}[{i}]",
                        "JobID": job["ID"],
                        "JobType": job["Type"],
                        "JobVersion": job["Version"],
                        "TaskGroup": g["Name"],
                        "ClientStatus": "failed" if bad else "running",
                        "ClientDescription": "Failed tasks" if bad else "Tasks are running",
                        "DeploymentStatus": (
                            {"Healthy": not bad, "Canary": False} if deployment_id else None
                        ),
                        "CreateIndex": job["JobModifyIndex"],
                    }
                )
                alloc["DeploymentID"] = deployment_id
                alloc["TaskStates"] = {
                    t["Name"]: {**alloc["TaskStates"]["api"], "Failed": bad, "State": "dead"}
                    if bad
                    else {**alloc["TaskStates"]["api"], "Failed": False, "State": "running"}
                    for t in g.get("Tasks") or []
                }
                if bad:
                    failed_alloc = alloc_id
                    unhealthy += 1
                else:
                    healthy += 1
                placed += 1
                self.allocs[alloc_id] = alloc
            states[g["Name"]] = {
                "DesiredTotal": g.get("Count", 1),
                "PlacedAllocs": placed,
                "HealthyAllocs": healthy,
                "UnhealthyAllocs": unhealthy,
                "AutoRevert": False,
                "Promoted": False,
                "DesiredCanaries": 0,
                "PlacedCanaries": None,
                "ProgressDeadline": (g.get("Update") or {}).get("ProgressDeadline", 0),
            }
        if deployment_id:
            self.deployments[deployment_id] = {
                "ID": deployment_id,
                "Namespace": job["Namespace"],
                "JobID": job["ID"],
                "JobVersion": job["Version"],
                "JobModifyIndex": job["JobModifyIndex"],
                "JobCreateIndex": job["CreateIndex"],
                "TaskGroups": states,
                "Status": "running",
                "StatusDescription": "Deployment is running",
                "CreateIndex": job["JobModifyIndex"],
                "ModifyIndex": job["JobModifyIndex"],
                "_outcome": outcome,
                "_reads": 0,
            }

    def deployment_view(self, dep: dict[str, Any]) -> dict[str, Any]:
        dep["_reads"] += 1
        if dep["Status"] == "running" and dep["_reads"] > self.polls_before_done:
            if dep["_outcome"] == "failed":
                dep["Status"] = "failed"
                dep["StatusDescription"] = "Failed due to unhealthy allocations"
            elif dep["_outcome"] == "successful":
                dep["Status"] = "successful"
                dep["StatusDescription"] = "Deployment completed successfully"
                job = self.jobs[dep["JobID"]].job
                job["Stable"] = True
        return {k: v for k, v in dep.items() if not k.startswith("_")}

    def stop(self, job_id: str, purge: bool) -> tuple[int, Any]:
        stored = self.jobs.get(job_id)
        if stored is None:
            return 404, "job not found"
        index = self.next_index()
        if purge:
            del self.jobs[job_id]
        else:
            stored.job.update(
                {"Stop": True, "Status": "dead", "JobModifyIndex": index, "ModifyIndex": index}
            )
            stored.job["Version"] += 1
        for alloc in self.allocs.values():
            if alloc["JobID"] == job_id:
                alloc["DesiredStatus"] = "stop"
                alloc["ClientStatus"] = "complete"
        eval_id = str(uuid.uuid4())
        self.evals[eval_id] = {"ID": eval_id, "JobID": job_id, "Status": "complete"}
        return 200, {"EvalID": eval_id, "EvalCreateIndex": index, "JobModifyIndex": index}

    def summary(self, job_id: str) -> dict[str, Any]:
        body: dict[str, Any] = fixture("n09-nomad-job-summary.json")
        job = self.jobs[job_id].job
        body["JobID"] = job_id
        body["Summary"] = {}
        for g in job.get("TaskGroups") or []:
            allocs = [a for a in self.allocs.values() if a["JobID"] == job_id]
            mine = [a for a in allocs if a["TaskGroup"] == g["Name"]]
            body["Summary"][g["Name"]] = {
                "Queued": 0,
                "Complete": sum(a["ClientStatus"] == "complete" for a in mine),
                "Failed": sum(a["ClientStatus"] == "failed" for a in mine),
                "Running": sum(a["ClientStatus"] == "running" for a in mine),
                "Starting": 0,
                "Lost": 0,
            }
        return body


def _tg_updates() -> dict[str, int]:
    keys = ("Ignore", "Place", "Migrate", "Stop", "InPlaceUpdate", "DestructiveUpdate", "Canary")
    return dict.fromkeys(keys, 0)


def _canonical(job: dict[str, Any]) -> dict[str, Any]:
    """What Nomad would fill in, so a resubmitted job compares equal to the stored one."""
    job = {k: v for k, v in job.items() if k not in _JOB_BOOKKEEPING}
    job.setdefault("Namespace", "default")
    job.setdefault("Type", "service")
    job.setdefault("Priority", 50)
    job.setdefault("Region", "global")
    job.setdefault("Stop", False)
    return job


def _is_job_path(path: str) -> bool:
    parts = path.strip("/").split("/")
    return len(parts) == 3 and parts[:2] == ["v1", "job"]


class _Handler(BaseHTTPRequestHandler):
    owner: NomadDouble
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else None

    def _send(self, status: int, body: Any, index: int | None = None) -> None:
        data = (json.dumps(body) if not isinstance(body, str) else body).encode()
        self.send_response(status)
        self.send_header(
            "Content-Type", "application/json" if not isinstance(body, str) else "text/plain"
        )
        if index is not None:
            self.send_header("X-Nomad-Index", str(index))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        body = self._body() if method in ("POST", "PUT") else None
        d = self.owner
        with d.lock:
            d.requests.append(
                Request(method, url.path, parse_qs(url.query), dict(self.headers.items()), body)
            )
            if d.token is not None and self.headers.get("X-Nomad-Token") != d.token:
                self._send(403, "Permission denied")
                return
            try:
                status, payload = self._route(method, url.path, parse_qs(url.query), body)
            except KeyError as exc:
                status, payload = 404, f"not found: {exc}"
            self._send(status, payload, d.index)

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        d = self.owner
        parts = path.strip("/").split("/")
        if parts[:1] != ["v1"]:
            return 404, "unknown path"
        rest = parts[1:]
        if rest == ["agent", "self"] and method == "GET":
            return 200, d.agent_self()
        if rest == ["jobs", "parse"] and method in ("POST", "PUT"):
            return d.parse(body or {})
        if rest == ["jobs"] and method in ("POST", "PUT"):
            return d.register(body or {}, None)
        if rest[:1] == ["job"] and len(rest) >= 2:
            job_id = rest[1]
            tail = rest[2:]
            if not tail and method in ("POST", "PUT"):
                return d.register(body or {}, job_id)
            if tail == ["plan"] and method in ("POST", "PUT"):
                return d.plan(job_id, body or {})
            if not tail and method == "DELETE":
                return d.stop(job_id, [p.lower() for p in query.get("purge", [])] == ["true"])
            if job_id not in d.jobs:
                return 404, "job not found"
            if not tail:
                return 200, d.jobs[job_id].job
            if tail == ["allocations"]:
                return 200, [a for a in d.allocs.values() if a["JobID"] == job_id]
            if tail == ["summary"]:
                return 200, d.summary(job_id)
            if tail == ["deployments"]:
                deps = [x for x in d.deployments.values() if x["JobID"] == job_id]
                return 200, [d.deployment_view(x) for x in deps]
            if tail == ["deployment"]:
                deps = [x for x in d.deployments.values() if x["JobID"] == job_id]
                if not deps:
                    return 200, None
                latest = max(deps, key=lambda x: x["CreateIndex"])
                return 200, d.deployment_view(latest)
        if rest[:1] == ["deployment"] and len(rest) == 2:
            return 200, d.deployment_view(d.deployments[rest[1]])
        if rest[:2] == ["deployment", "allocations"] and len(rest) == 3:
            return 200, [a for a in d.allocs.values() if a.get("DeploymentID") == rest[2]]
        if rest[:1] == ["evaluation"] and len(rest) == 2:
            return 200, d.evals[rest[1]]
        if rest[:1] == ["allocation"] and len(rest) == 2:
            return 200, d.allocs[rest[1]]
        return 404, f"double: no route for {method} {path}"
