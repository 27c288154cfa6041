#!/usr/bin/python3
# SPDX-License-Identifier: MPL-2.0
"""A client that keeps requesting an upstream until told to stop, and counts what it lost.

A request is retried only while the connection is refused (nothing was sent: the listener is
restarting), for at most --retry-for seconds. Any other failure, or running out of retries, is
a lost request. Writes a JSON summary to --out when the stop file appears (or --max-seconds).
"""

import argparse
import json
import os
import time
import urllib.error
import urllib.request


def one(url: str, retry_for: float) -> tuple[str, int, str]:
    """(outcome, refused_attempts, detail) with outcome ok | lost."""
    refused = 0
    deadline = time.monotonic() + retry_for
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                body = resp.read().decode(errors="replace").strip()
                if resp.status == 200:
                    return "ok", refused, body
                return "lost", refused, f"HTTP {resp.status}"
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ConnectionRefusedError) and time.monotonic() < deadline:
                refused += 1
                time.sleep(0.05)
                continue
            return "lost", refused, repr(reason)
        except (OSError, ValueError) as exc:
            return "lost", refused, repr(exc)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--stop-file", required=True)
    p.add_argument("--interval", type=float, default=0.05)
    p.add_argument("--retry-for", type=float, default=5.0)
    p.add_argument("--max-seconds", type=float, default=900)
    a = p.parse_args()
    started = time.monotonic()
    counts = {"ok": 0, "lost": 0}
    refused_total = 0
    answers: dict[str, int] = {}
    lost: list[dict[str, object]] = []
    while not os.path.exists(a.stop_file) and time.monotonic() - started < a.max_seconds:
        outcome, refused, detail = one(a.url, a.retry_for)
        counts[outcome] += 1
        refused_total += refused
        if outcome == "ok":
            answers[detail] = answers.get(detail, 0) + 1
        else:
            lost.append({"at": round(time.monotonic() - started, 2), "error": detail})
        time.sleep(a.interval)
    summary = {
        "url": a.url,
        "seconds": round(time.monotonic() - started, 1),
        "requests": counts["ok"] + counts["lost"],
        "ok": counts["ok"],
        "lost": counts["lost"],
        "refused_then_retried": refused_total,
        "answers": answers,
        "lost_detail": lost[:20],
    }
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(summary, f)
    os.replace(tmp, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
