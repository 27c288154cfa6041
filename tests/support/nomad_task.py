# SPDX-License-Identifier: MPL-2.0
"""What a Nomad client does with a meshkit-proxy task before it starts it, for tests that run
the rendered task for real: write each template block's text into the task directory, with
consul-template's `{{ env "NAME" }}` filled in, and expand `${NOMAD_TASK_DIR}` in the args."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_ENV = re.compile(r'\{\{ env "([A-Za-z_]+)" \}\}')


def materialize(task: Mapping[str, Any], task_dir: Path, nomad_env: Mapping[str, str]) -> list[str]:
    """Write `task`'s templates under `task_dir` as Nomad would; the task's args, ready to run."""
    for tpl in task.get("Templates") or []:
        text = _ENV.sub(lambda m: nomad_env[m.group(1)], tpl["EmbeddedTmpl"])
        dest = task_dir / tpl["DestPath"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
    local = str(task_dir / "local")
    return [a.replace("${NOMAD_TASK_DIR}", local) for a in task["Config"]["args"]]
