# SPDX-License-Identifier: MPL-2.0
"""The host package and the tools package ship apart, and a tools edit is no proxy release.

Proxy hosts install the wheel built from proxy/ (mesh_proxy's artefact, named by a hash of the
host sources only); consul_dev installs the tools wheel from tools/. The root pyproject is the
developer's install of both. These tests build the real wheels and compute the real release
names with the role's own build_artefact.py.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

import meshkit

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "roles" / "mesh_proxy" / "files" / "build_artefact.py"
TOOL_MODULES = ("devagent/", "lab/", "demo.py", "cli.py", "render_cmd.py", "nomad_cmd.py", "pki.py")


def build_artefact() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_artefact", BUILD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_artefact"] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


def project(path: Path) -> dict[str, object]:
    data: dict[str, object] = tomllib.loads(path.read_text())["project"]
    return data


def test_the_three_pyprojects_agree_on_version_and_pin() -> None:
    root, host, tools = (project(ROOT / d / "pyproject.toml") for d in (".", "proxy", "tools"))
    assert root["version"] == host["version"] == tools["version"] == meshkit.__version__
    assert host["name"] == "meshkit" and tools["name"] == "meshkit-tools"
    assert f"meshkit=={host['version']}" in tools["dependencies"]  # type: ignore[operator]
    # what a host runs needs nothing the controller or the dev agent needs
    assert not [d for d in host["dependencies"] if d.split(">")[0] in ("ansible-core", "jinja2")]  # type: ignore[attr-defined]


def test_aiohttp_is_only_the_web_extra_of_the_host_package() -> None:
    """The proxy's Consul client needs no HTTP library; meshkit.native.web (aiohttp) is an extra,
    and the tools package (the dev agent is an aiohttp server) and the dev install keep it."""
    root, host, tools = (project(ROOT / d / "pyproject.toml") for d in (".", "proxy", "tools"))
    names = [str(d).split(">")[0].split("=")[0] for d in host["dependencies"]]  # type: ignore[attr-defined]
    assert "aiohttp" not in names
    assert host["optional-dependencies"]["web"] == ["aiohttp>=3.9"]  # type: ignore[index]
    assert "aiohttp>=3.9" in tools["dependencies"]  # type: ignore[operator]
    assert "aiohttp>=3.9" in root["dependencies"]  # type: ignore[operator]


def test_native_web_without_aiohttp_names_the_extra() -> None:
    code = "import sys; sys.modules['aiohttp'] = None; import meshkit.native.web"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1
    assert (
        last.startswith("ImportError: meshkit.native.web needs aiohttp") and "meshkit[web]" in last
    )


def entry_points(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))
        return z.read(name).decode()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    src = copy_sources(tmp_path_factory.mktemp("src"))  # no build/ leftovers of the checkout
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
         "-w", str(out), str(src / "proxy"), str(src / "tools")],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (host,) = out.glob("meshkit-*.whl")
    (tools,) = out.glob("meshkit_tools-*.whl")
    return {"host": host, "tools": tools}


@pytest.fixture(scope="module")
def wheels(built: dict[str, Path]) -> dict[str, set[str]]:
    return {name: set(zipfile.ZipFile(path).namelist()) for name, path in built.items()}


def test_the_host_wheel_holds_only_what_a_host_runs(wheels: dict[str, set[str]]) -> None:
    host = wheels["host"]
    assert "meshkit/proxy_main.py" in host and "meshkit/consul/watch.py" in host
    assert "meshkit/native/service.py" in host  # the Connect-native library runs on hosts too
    strays = [n for n in host if n.startswith(tuple(f"meshkit/{m}" for m in TOOL_MODULES))]
    assert strays == [] and not [n for n in host if "_collection" in n or "meshkit_tools" in n]


def test_the_host_wheel_requires_aiohttp_only_with_the_web_extra(built: dict[str, Path]) -> None:
    with zipfile.ZipFile(built["host"]) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        requires = [
            line for line in z.read(name).decode().splitlines() if line.startswith("Requires-Dist:")
        ]
    assert [r for r in requires if "aiohttp" in r] == [
        'Requires-Dist: aiohttp>=3.9; extra == "web"'
    ]


def test_each_wheel_installs_its_own_command(built: dict[str, Path]) -> None:
    host, tools = entry_points(built["host"]), entry_points(built["tools"])
    assert "meshkit-proxy = meshkit.proxy_main:main" in host and "meshkit =" not in host
    assert "meshkit = meshkit_tools.cli:main" in tools


def test_the_tools_wheel_holds_the_tools_and_the_collection_utils(
    wheels: dict[str, set[str]],
) -> None:
    tools = wheels["tools"]
    for module in (
        "devagent/server.py",
        "lab/net.py",
        "demo.py",
        "cli.py",
        "render_cmd.py",
        "pki.py",
    ):
        assert f"meshkit_tools/{module}" in tools, module
    utils = "meshkit_tools/_collection/ansible_collections/meshkit/connect/plugins/module_utils/"
    assert f"{utils}mesh_model.py" in tools
    assert not [
        n for n in tools if n.startswith("meshkit/")
    ]  # the host package comes as a dependency


def copy_sources(dest: Path) -> Path:
    for folder in ("proxy", "tools"):
        shutil.copytree(
            ROOT / folder, dest / folder,  # links followed: tools/ carries the module_utils
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"),
        )  # fmt: skip
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_a_lab_edit_keeps_the_host_release_and_a_proxy_edit_makes_a_new_one(tmp_path: Path) -> None:
    ba = build_artefact()
    tree = copy_sources(tmp_path / "checkout")
    assert ba.is_checkout(tree)
    host, tools = ba.PACKAGES["host"], ba.PACKAGES["tools"]
    before = (ba.source_digest(tree, host), ba.source_digest(tree, tools))

    for edited in ("tools/meshkit_tools/lab/net.py", "tools/meshkit_tools/devagent/server.py",
                   "tools/meshkit_tools/demo.py", "tools/pyproject.toml"):  # fmt: skip
        with (tree / edited).open("a") as f:
            f.write("\n# a lab-only edit\n")
    after_tools_edit = (ba.source_digest(tree, host), ba.source_digest(tree, tools))
    assert after_tools_edit[0] == before[0]  # same host artefact name: no proxy restarts
    assert after_tools_edit[1] != before[1]  # the dev agent gets a new release

    with (tree / "proxy/meshkit/tls.py").open("a") as f:
        f.write("\n# a data-path edit\n")
    after_proxy_edit = (ba.source_digest(tree, host), ba.source_digest(tree, tools))
    assert after_proxy_edit[0] != after_tools_edit[0]
    assert after_proxy_edit[1] != after_tools_edit[1]  # the tools ship with the host package


def test_the_host_artefact_is_named_by_the_host_sources_end_to_end(tmp_path: Path) -> None:
    """build_artefact.py's printed release, with a lab edit between two runs (shiv kind is not
    installed here; the wheelhouse build downloads wheels, so this uses a prebuilt artefact
    directory: the name is decided before any build, and an existing artefact is reused)."""
    ba = build_artefact()
    tree = copy_sources(tmp_path / "checkout")
    out = tmp_path / "artefacts"
    out.mkdir()
    digest = ba.source_digest(tree, ba.PACKAGES["host"])
    version = project(tree / "proxy" / "pyproject.toml")["version"]
    name = f"meshkit-{version}-{digest}-fast-cp311-x86_64.tar.gz"
    (out / name).write_bytes(b"prebuilt")  # present: build_artefact reuses it, as on a re-run

    def release() -> str:
        res = subprocess.run(
            [sys.executable, str(BUILD), "--source", str(tree), "--out", str(out),
             "--python-version", "3.11", "--arch", "x86_64"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        result: dict[str, object] = json.loads(res.stdout)
        assert result["changed"] is False, result
        return str(result["name"])

    assert release() == name
    (tree / "tools/meshkit_tools/lab/net.py").write_text("# rewritten by a lab-only edit\n")
    assert release() == name
