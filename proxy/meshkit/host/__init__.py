# SPDX-License-Identifier: MPL-2.0
"""`meshkit-proxy-host`: one parent per host that imports the data path once and forks one
Consul-mode sidecar per `<ID>.env` file, so the sidecars share the parent's imported pages
(copy-on-write) instead of each paying for its own interpreter's imports.

- envdir.py: the one reader of the env directory (a definition per sidecar);
- child.py: fork one sidecar and run it as `meshkit-proxy` would run;
- supervisor.py: the loop (restarts with back-off, SIGHUP re-read, the roll that replaces
  sidecars one at a time, SIGUSR2 upgrade, SIGTERM stop, pid files);
- ready.py: one bounded `GET /ready` from the parent, between two signal waits;
- upgrade.py: the upgrade in place (the command to exec, the hand-over of the children);
- main.py: flags, the imports before the fork, exit codes.
"""
