"""The wheel as a hospital's IT team gets it: built from the tracked files only (as a
clean clone has them, via an sdist), installed into a fresh venv outside the checkout by
the container's own script, it finds its packaged config, passes check-config, and runs
`monitor run --demo` until /healthz answers and SIGTERM stops it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.helpers import ROOT

SMOKE = ROOT / "scripts" / "container-smoke"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_tree(dest: Path) -> Path:
    """The tracked files with their current content: what a clean clone would hold."""
    files = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("build")
    src = _clean_tree(work / "src")
    dist = work / "dist"
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"from setuptools import build_meta as b; b.build_sdist({str(dist)!r})",
        ],
        cwd=src,
        check=True,
        capture_output=True,
    )
    (sdist,) = dist.glob("*.tar.gz")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(dist),
            str(sdist),
        ],
        cwd=work,
        check=True,
        capture_output=True,
    )
    (whl,) = dist.glob("*.whl")
    return whl


def test_wheel_carries_config_examples_templates(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (
        "monitor/_config/monitor.toml",
        "monitor/_config/mapping.toml",
        "monitor/_config/protocols/azathioprine-seed.toml",
        "monitor/_config/protocols/azathioprine-bsr2017.toml",
        "monitor/_examples/01-stop-transaminase.json",
        "monitor/web/templates/base.html",
        "monitor/migrations/env.py",
        "monitor/py.typed",
    ):
        assert name in names, name
    assert any(n.startswith("monitor/web/static/") for n in names)
    assert any(n.startswith("monitor/migrations/versions/") for n in names)
    shipped = {
        f"monitor/_config/{p.relative_to(ROOT / 'config')}"
        for p in (ROOT / "config").rglob("*.toml")
    }
    assert shipped <= names


def test_installed_wheel_runs_the_demo_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    env = {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "STATE_DIRECTORY": str(tmp_path / "state"),
        "MONITOR_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
        # the test venv's dependencies, so no download; the wheel itself has --no-deps
        "SMOKE_DEPS_FROM": sysconfig.get_paths()["purelib"],
    }

    def sh(*args: str, **kw: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, cwd=tmp_path, env={**env, **kw}, check=False, capture_output=True, text=True
        )

    r = sh(str(SMOKE), "install", str(venv), str(wheel))
    assert r.returncode == 0, r.stderr
    where = sh(str(venv / "bin" / "python"), "-c", "import monitor.paths as p; print(p.__file__)")
    assert where.stdout.startswith(str(venv)), where.stdout  # not the checkout's copy

    check = sh(str(SMOKE), "check", str(venv))
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.startswith("lab-monitor ")
    assert "profile azathioprine-seed" in check.stdout
    assert "found by the packaged demo default" in check.stdout
    assert f"{venv}/lib/" in check.stdout and "_config/monitor.toml" in check.stdout

    site = tmp_path / "site"
    assert sh("monitor", "init", str(site)).returncode == 0
    web, mllp = _free_port(), _free_port()
    text = (site / "monitor.toml").read_text()
    text = text.replace("port = 8080", f"port = {web}").replace("port = 2575", f"port = {mllp}")
    (site / "monitor.toml").write_text(text)

    proc = subprocess.Popen(
        ["monitor", "run", "--demo"],
        cwd=tmp_path,
        env={**env, "MONITOR_CONFIG": str(site / "monitor.toml")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{web}/healthz"
        deadline = time.monotonic() + 60
        while sh(str(SMOKE), "health", url).returncode != 0:
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "no /healthz within 60 s"
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.3)
        body = json.loads(urllib.request.urlopen(url, timeout=5).read())
        assert body["version"] == check.stdout.split()[1]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "Enrolled example" in out
    assert (tmp_path / "demo.db").exists()
    assert os.fspath(ROOT) not in out  # nothing came from the checkout
