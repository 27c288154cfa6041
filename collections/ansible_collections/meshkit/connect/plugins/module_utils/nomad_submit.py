# SPDX-License-Identifier: MPL-2.0
"""Submit a job the way a careful operator does, through python-nomad.

render -> plan (with diff) -> stop here in check mode -> register with EnforceIndex and the
planned JobModifyIndex -> optionally wait for the deployment. Shared by the `nomad_job`
module and `meshkit nomad`. python-nomad leaves TLS verification off by default; here it is
on unless explicitly disabled. The token is never part of a message or a result.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

TERMINAL_DEPLOYMENT = ("successful", "failed", "cancelled")
ENFORCE_PREFIX = "Enforcing job modify index"


class NomadSubmitError(RuntimeError):
    """A failed step, told in words an operator can act on (never containing the token)."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class NomadConnection:
    address: str
    token: str = field(default="", repr=False)
    namespace: str = ""
    region: str = ""
    verify: bool | str = True  # True, False, or a CA bundle path
    client_cert: str = ""
    client_key: str = ""
    timeout: int = 10


def connection_from(
    *,
    address: str | None = None,
    token: str | None = None,
    namespace: str | None = None,
    region: str | None = None,
    validate_certs: bool = True,
    ca_cert: str | None = None,
    client_cert: str | None = None,
    client_key: str | None = None,
    timeout: int = 10,
    env: Mapping[str, str] | None = None,
) -> NomadConnection:
    """Options first, then the NOMAD_* environment like the nomad CLI, then the defaults."""
    env = os.environ if env is None else env
    addr = address or env.get("NOMAD_ADDR") or "http://127.0.0.1:4646"
    if "://" not in addr:
        raise NomadSubmitError(
            f"Nomad address {addr!r} has no scheme; write http://host:4646 or https://host:4646"
        )
    ca = ca_cert or env.get("NOMAD_CACERT") or ""
    verify: bool | str = (ca or True) if validate_certs else False
    return NomadConnection(
        address=addr.rstrip("/"),
        token=token or env.get("NOMAD_TOKEN") or "",
        namespace=namespace or env.get("NOMAD_NAMESPACE") or "",
        region=region or env.get("NOMAD_REGION") or "",
        verify=verify,
        client_cert=client_cert or env.get("NOMAD_CLIENT_CERT") or "",
        client_key=client_key or env.get("NOMAD_CLIENT_KEY") or "",
        timeout=timeout,
    )


def client(conn: NomadConnection) -> Any:
    """A python-nomad client with verification on (the library's default is off)."""
    try:
        import nomad
    except ImportError as exc:
        raise NomadSubmitError(
            "python-nomad is not installed on the host running this; "
            "pip install 'python-nomad>=2.0' (or meshkit[controller])"
        ) from exc
    cert = (conn.client_cert, conn.client_key) if conn.client_cert and conn.client_key else ()
    return nomad.Nomad(
        address=conn.address,
        token=conn.token or None,
        namespace=conn.namespace or None,
        region=conn.region or None,
        verify=conn.verify,
        cert=cert,
        timeout=conn.timeout,
    )


def _redact(text: str, conn: NomadConnection) -> str:
    return text.replace(conn.token, "<redacted>") if conn.token else text


def _api_error(exc: BaseException, conn: NomadConnection, doing: str) -> NomadSubmitError:
    resp = getattr(exc, "nomad_resp", None)
    status = getattr(resp, "status_code", None)
    body = getattr(resp, "text", None)
    if body is not None:
        detail = f"HTTP {status}: {body.strip()}"
    else:
        detail = str(resp if resp is not None else exc)
        if "CERTIFICATE_VERIFY_FAILED" in detail:
            detail = (
                "the server's TLS certificate is not trusted (set ca_cert / NOMAD_CACERT to the "
                "CA that signed it; validate_certs: false only for throwaway test clusters)"
            )
    hint = ""
    if status == 403:
        hint = " (check the ACL token: option token or NOMAD_TOKEN, and its namespace policy)"
    return NomadSubmitError(_redact(f"{doing} failed at {conn.address}: {detail}{hint}", conn))


def _call(conn: NomadConnection, doing: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except NomadSubmitError:
        raise
    except Exception as exc:  # python-nomad raises its own and requests' exceptions
        raise _api_error(exc, conn, doing) from None


def call(conn: NomadConnection, doing: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """One Nomad API call; failures become NomadSubmitError saying what was being done."""
    return _call(conn, doing, fn, *args, **kw)


def detect_version(n: Any, conn: NomadConnection) -> str:
    """The agent's Nomad version (GET /v1/agent/self), for the version gates."""
    body = _call(conn, "reading the Nomad version (agent/self)", n.agent.get_agent)
    try:
        return str(body["config"]["Version"]["Version"])
    except (KeyError, TypeError):
        raise NomadSubmitError(
            "agent/self did not say the Nomad version; set nomad_version explicitly"
        ) from None


# --- plan -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    job_id: str
    diff: Mapping[str, Any] | None
    job_modify_index: int
    warnings: str
    failed_groups: Mapping[str, Any]
    desired_updates: Mapping[str, Any]

    @property
    def diff_type(self) -> str:
        return str(self.diff.get("Type", "None")) if self.diff else "None"

    @property
    def changed(self) -> bool:
        return self.diff_type != "None"

    def summary(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "diff_type": self.diff_type,
            "job_modify_index": self.job_modify_index,
            "warnings": self.warnings,
            "failed_groups": dict(self.failed_groups),
            "desired_updates": dict(self.desired_updates),
            "diff": dict(self.diff) if self.diff else None,
        }


def plan(n: Any, conn: NomadConnection, job: Mapping[str, Any]) -> Plan:
    body = _call(
        conn, f"planning job {job['ID']}", n.job.plan_job, job["ID"], {"Job": dict(job)}, diff=True
    )
    annotations = body.get("Annotations") or {}
    return Plan(
        job_id=str(job["ID"]),
        diff=body.get("Diff"),
        job_modify_index=int(body.get("JobModifyIndex") or 0),
        warnings=str(body.get("Warnings") or ""),
        failed_groups=body.get("FailedTGAllocs") or {},
        desired_updates=annotations.get("DesiredTGUpdates") or {},
    )


_MARK = {"Added": "+", "Deleted": "-", "Edited": "~", "None": " "}


def format_diff(diff: Mapping[str, Any] | None) -> str:
    """The plan's diff as `nomad job plan` prints it, for Ansible's --diff and the CLI."""
    if not diff:
        return "(no diff)\n"
    lines: list[str] = [f'{_MARK.get(str(diff.get("Type")), "?")} Job: "{diff.get("ID")}"']

    def fields(items: Any, depth: int) -> None:
        for f in items or []:
            pad = "  " * depth
            mark = _MARK.get(str(f.get("Type")), "?")
            kind = f.get("Type")
            old, new = f.get("Old", ""), f.get("New", "")
            if kind == "Edited":
                lines.append(f'{pad}{mark} {f.get("Name")}: "{old}" => "{new}"')
            elif kind == "Deleted":
                lines.append(f'{pad}{mark} {f.get("Name")}: "{old}"')
            else:
                lines.append(f'{pad}{mark} {f.get("Name")}: "{new}"')

    def objects(items: Any, depth: int) -> None:
        for o in items or []:
            pad = "  " * depth
            lines.append(f"{pad}{_MARK.get(str(o.get('Type')), '?')} {o.get('Name')} {{")
            fields(o.get("Fields"), depth + 1)
            objects(o.get("Objects"), depth + 1)
            lines.append(f"{pad}  }}")

    fields(diff.get("Fields"), 1)
    objects(diff.get("Objects"), 1)
    for g in diff.get("TaskGroups") or []:
        lines.append(f'{_MARK.get(str(g.get("Type")), "?")} Task Group: "{g.get("Name")}"')
        fields(g.get("Fields"), 1)
        objects(g.get("Objects"), 1)
        for t in g.get("Tasks") or []:
            lines.append(f'  {_MARK.get(str(t.get("Type")), "?")} Task: "{t.get("Name")}"')
            fields(t.get("Fields"), 2)
            objects(t.get("Objects"), 2)
    return "\n".join(lines) + "\n"


# --- register and wait ------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRegistration:
    eval_id: str
    job_modify_index: int
    warnings: str


def register(
    n: Any, conn: NomadConnection, job: Mapping[str, Any], planned: Plan
) -> JobRegistration:
    """Register only what was planned: a job changed by anyone since the plan is refused."""
    payload = {"Job": dict(job), "EnforceIndex": True, "JobModifyIndex": planned.job_modify_index}
    try:
        body = n.jobs.register_job(payload)
    except Exception as exc:
        err = _api_error(exc, conn, f"registering job {job['ID']}")
        text = getattr(getattr(exc, "nomad_resp", None), "text", "") or ""
        if ENFORCE_PREFIX in text:
            raise NomadSubmitError(
                f"job {job['ID']} was changed by someone else after the plan (planned "
                f"JobModifyIndex {planned.job_modify_index}; Nomad says: {text.strip()}). "
                "Nothing was registered; run again to plan against the current job.",
                conflict=True,
            ) from None
        raise err from None
    return JobRegistration(
        eval_id=str(body.get("EvalID") or ""),
        job_modify_index=int(body.get("JobModifyIndex") or 0),
        warnings=str(body.get("Warnings") or ""),
    )


def expects_deployment(job: Mapping[str, Any]) -> bool:
    """Whether Nomad will run a deployment: a service job with a running group whose update
    block (its own, the job's, or Nomad's default `max_parallel = 1` when neither is written)
    has a non-zero max_parallel. Only `max_parallel = 0` turns deployments off."""
    if (job.get("Type") or "service") != "service":
        return False
    job_update = job.get("Update") or {}
    for group in job.get("TaskGroups") or []:
        update = {**job_update, **(group.get("Update") or {})}
        max_parallel = update.get("MaxParallel")
        count = group.get("Count")
        if (
            int(1 if count is None else count) > 0
            and int(1 if max_parallel is None else max_parallel) > 0
        ):
            return True
    return False


@dataclass(frozen=True)
class WaitResult:
    deployment_id: str = ""
    status: str = ""
    description: str = ""
    note: str = ""


def _describe_allocs(allocs: Any, healthy_ok: bool = True) -> list[str]:
    out = []
    for a in allocs or []:
        health = (a.get("DeploymentStatus") or {}).get("Healthy")
        bad = a.get("ClientStatus") in ("failed", "lost") or health is False
        pending = health is None and a.get("ClientStatus") in ("pending", "running")
        if not bad and (healthy_ok or not pending):
            continue
        failed_tasks = [
            name
            for name, state in (a.get("TaskStates") or {}).items()
            if (state or {}).get("Failed")
        ]
        why = f"client status {a.get('ClientStatus')}"
        if health is False:
            why += ", unhealthy"
        elif pending:
            why += ", health not yet reported"
        if failed_tasks:
            why += f", failed tasks: {', '.join(sorted(failed_tasks))}"
        out.append(f"{a.get('Name')} (alloc {str(a.get('ID'))[:8]}: {why})")
    return out


def wait(
    n: Any,
    conn: NomadConnection,
    job: Mapping[str, Any],
    reg: JobRegistration,
    *,
    timeout: float,
    interval: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WaitResult:
    """Wait for the evaluation, then (only if one is due) for the deployment; bounded in time."""
    job_id = str(job["ID"])
    deadline = clock() + timeout
    max_polls = int(timeout / max(interval, 0.001)) + 2
    evaluation: Any = None
    for _poll in range(max_polls):
        if reg.eval_id:
            evaluation = _call(
                conn, f"reading evaluation {reg.eval_id}", n.evaluation.get_evaluation, reg.eval_id
            )
            if evaluation.get("Status") not in ("pending", None):
                break
        if clock() >= deadline:
            raise NomadSubmitError(f"job {job_id}: evaluation {reg.eval_id} still pending")
        sleep(interval)
    failed = (evaluation or {}).get("FailedTGAllocs") or {}
    if failed or (evaluation or {}).get("Status") in ("failed", "blocked"):
        groups = ", ".join(sorted(failed)) or "?"
        raise NomadSubmitError(
            f"job {job_id}: the scheduler could not place group(s) {groups} "
            f"(evaluation {reg.eval_id} {evaluation.get('Status')}); see the plan's failed_groups",
            failed_groups=failed,
        )
    if not expects_deployment(job):
        return WaitResult(
            note="no deployment for this job (type, count 0 or update max_parallel 0)"
        )
    deployment: Any = None
    for _poll in range(max_polls):
        deployment = _call(
            conn, f"reading the deployment of {job_id}", n.job.get_deployment, job_id
        )
        current = deployment and int(deployment.get("JobModifyIndex") or 0) >= reg.job_modify_index
        if current and deployment.get("Status") in TERMINAL_DEPLOYMENT:
            break
        if clock() >= deadline:
            if not current:
                raise NomadSubmitError(
                    f"job {job_id}: no deployment for the new version within {timeout:g}s"
                )
            allocs = _call(
                conn,
                "reading deployment allocations",
                n.deployment.get_deployment_allocations,
                deployment["ID"],
            )
            names = _describe_allocs(allocs, healthy_ok=False)
            raise NomadSubmitError(
                f"job {job_id}: deployment {deployment['ID'][:8]} still "
                f"{deployment.get('Status')} after {timeout:g}s; allocations not healthy: "
                f"{'; '.join(names) or 'none placed yet'}",
                deployment_id=deployment["ID"],
                allocations=names,
            )
        sleep(interval)
    status = str(deployment.get("Status"))
    if status != "successful":
        allocs = _call(
            conn,
            "reading deployment allocations",
            n.deployment.get_deployment_allocations,
            deployment["ID"],
        )
        names = _describe_allocs(allocs)
        raise NomadSubmitError(
            f"job {job_id}: deployment {deployment['ID'][:8]} {status}: "
            f"{deployment.get('StatusDescription')}; failed allocations: "
            f"{'; '.join(names) or 'none reported'}",
            deployment_id=deployment["ID"],
            allocations=names,
        )
    return WaitResult(
        deployment_id=str(deployment["ID"]),
        status=status,
        description=str(deployment.get("StatusDescription") or ""),
    )


# --- the whole sequence -----------------------------------------------------------------------


@dataclass
class Outcome:
    changed: bool
    plan: Plan | None = None
    registration: JobRegistration | None = None
    waited: WaitResult | None = None
    stopped: bool = False
    messages: list[str] = field(default_factory=list)

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"changed": self.changed}
        if self.plan is not None:
            out["plan"] = self.plan.summary()
        if self.registration is not None:
            out["eval_id"] = self.registration.eval_id
            out["job_modify_index"] = self.registration.job_modify_index
        if self.waited is not None:
            out["deployment"] = {
                "id": self.waited.deployment_id,
                "status": self.waited.status,
                "description": self.waited.description,
                "note": self.waited.note,
            }
        if self.messages:
            out["messages"] = list(self.messages)
        return out


def apply(
    n: Any,
    conn: NomadConnection,
    job: Mapping[str, Any],
    *,
    check_mode: bool,
    wait_for_deployment: bool,
    wait_timeout: float = 300,
    interval: float = 1.0,
) -> Outcome:
    planned = plan(n, conn, job)
    outcome = Outcome(changed=planned.changed, plan=planned)
    if planned.warnings:
        outcome.messages.append(f"Nomad warnings: {planned.warnings}")
    if planned.failed_groups:
        outcome.messages.append(
            "the plan could not place group(s) "
            f"{', '.join(sorted(planned.failed_groups))}; see plan.failed_groups"
        )
    if check_mode or not planned.changed:
        return outcome
    outcome.registration = register(n, conn, job, planned)
    if wait_for_deployment:
        try:
            outcome.waited = wait(
                n, conn, job, outcome.registration, timeout=wait_timeout, interval=interval
            )
        except NomadSubmitError as exc:
            # The job is registered: say so, so a failed run is not mistaken for a no-op.
            exc.details.update(changed=True, eval_id=outcome.registration.eval_id)
            raise
    return outcome


def stop(n: Any, conn: NomadConnection, job_id: str, *, purge: bool, check_mode: bool) -> Outcome:
    """state=absent: stop the job (and purge it if asked); nothing to do is not a change."""
    try:
        current = n.job.get_job(job_id)
    except Exception as exc:
        if getattr(getattr(exc, "nomad_resp", None), "status_code", None) == 404:
            return Outcome(changed=False, messages=[f"job {job_id} does not exist"])
        raise _api_error(exc, conn, f"reading job {job_id}") from None
    if current.get("Stop") and not purge:
        return Outcome(changed=False, messages=[f"job {job_id} is already stopped"])
    if not check_mode:
        _call(conn, f"stopping job {job_id}", n.job.deregister_job, job_id, purge=purge or None)
    return Outcome(changed=True, stopped=True)
