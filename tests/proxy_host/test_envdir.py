# SPDX-License-Identifier: MPL-2.0
"""The one reader of a sidecar env directory: systemd's EnvironmentFile= lines, the unit's argv,
and a bad file named with its line and the fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from meshkit.host import envdir


def write(directory: Path, name: str, text: str | bytes) -> Path:
    path = directory / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_a_file_as_the_unit_reads_it(tmp_path: Path) -> None:
    token = write(tmp_path, "web-1.token", "s3cret\n")
    write(tmp_path, "web-1.env", (
        "# meshkit-proxy@web-1: sidecar for service web\n"
        "; a comment too\n\n"
        "CONSUL_HTTP_ADDR=127.0.0.1:8500\n"
        f"CONSUL_HTTP_TOKEN_FILE={token}\n"
        'CONSUL_CACERT="/etc/consul.d/ca.pem"\n'
        "  MESHKIT_ADMIN_BIND = 127.0.0.1:19000  \n"
        "MESHKIT_PROXY_ARGS=-log-level info   -allow-non-loopback-service\n"
    ))  # fmt: skip
    write(tmp_path, "notes.txt", "not a sidecar")
    (tmp_path / "dir.env").mkdir()  # not a file: not a sidecar
    (got,) = envdir.read_dir(tmp_path).values()
    assert got.sidecar_id == "web-1"
    assert got.environment == {
        "CONSUL_HTTP_ADDR": "127.0.0.1:8500",
        "CONSUL_HTTP_TOKEN_FILE": str(token),
        "CONSUL_CACERT": "/etc/consul.d/ca.pem",
        "MESHKIT_ADMIN_BIND": "127.0.0.1:19000",
        "MESHKIT_PROXY_ARGS": "-log-level info   -allow-non-loopback-service",
    }
    assert got.argv == (
        "-sidecar-for", "web-1", "-admin-bind", "127.0.0.1:19000",
        "-log-level", "info", "-allow-non-loopback-service",
    )  # fmt: skip
    st = os.stat(token)
    assert got.token_stamp == (st.st_ino, st.st_size, st.st_mtime_ns)


def test_changed_means_the_bytes_or_the_token_file(tmp_path: Path) -> None:
    token = write(tmp_path, "a.token", "one\n")
    text = f"MESHKIT_ADMIN_BIND=127.0.0.1:1\nCONSUL_HTTP_TOKEN_FILE={token}\n"
    path = write(tmp_path, "a.env", text)
    first = envdir.read_file(path)
    assert envdir.read_file(path).same_as(first)
    replacement = write(tmp_path, "a.token.new", "two!\n")
    os.replace(replacement, token)
    assert not envdir.read_file(path).same_as(first)
    second = envdir.read_file(path)
    path.write_text(path.read_text() + "# a comment is a change of the file too\n")
    assert not envdir.read_file(path).same_as(second)


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("a.env", "MESHKIT_ADMIN_BIND=127.0.0.1:1\nexport X=1\n",
         "a.env:2: not a KEY=VALUE line ('export X=1'); write NAME=value"),
        ("a.env", "MESHKIT_ADMIN_BIND=127.0.0.1:1\n1X=2\n", "a.env:2: not a KEY=VALUE line"),
        ("a.env", "X=a \\\n b\n", "a.env:1: a line continuation (trailing \\); put the value"),
        ("a.env", "CONSUL_HTTP_ADDR=127.0.0.1:8500\n",
         "a.env: no MESHKIT_ADMIN_BIND=; add MESHKIT_ADMIN_BIND=127.0.0.1:PORT"),
        ("a.env", b"X=\xff\n", "a.env: not UTF-8: byte 0xff at offset 2"),
        ("a.env", "X=1\n" * 20000, "a.env: larger than 65536 bytes"),
        ("a.env", "#\n" * 1001, "a.env: 1001 lines, more than 1000; split it up"),
        ("web@1.env", "MESHKIT_ADMIN_BIND=127.0.0.1:1\n", "web@1.env: 'web@1' is not a sidecar ID"),
        (".env", "MESHKIT_ADMIN_BIND=127.0.0.1:1\n", ".env: '' is not a sidecar ID"),
    ],
)  # fmt: skip
def test_a_bad_file_names_file_line_and_fix(
    tmp_path: Path, name: str, text: str | bytes, problem: str
) -> None:
    write(tmp_path, "good.env", "MESHKIT_ADMIN_BIND=127.0.0.1:2\n")
    write(tmp_path, name, text)
    with pytest.raises(envdir.EnvFileError) as caught:
        envdir.read_dir(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path}/{problem}"), str(caught.value)


def test_an_unreadable_directory_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(envdir.EnvFileError, match=r"/missing: cannot list: No such file"):
        envdir.read_dir(tmp_path / "missing")
