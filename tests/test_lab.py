"""`make lab` starts JupyterLab on loopback with token authentication on (checked with real requests)."""

import os
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.mark.slow
def test_make_lab_serves_the_course_with_a_token():
    if not (ROOT / ".venv" / ".installed").exists():
        pytest.skip("make lab needs the .venv that `make test` creates")
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_TOKEN": token, "BROWSER": "true"}
    proc = subprocess.Popen(["make", "-s", "lab", f"PORT={port}"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                code = status(f"{base}/api/status?token={token}")
                if code == 200:
                    break
            except OSError:
                pass
            time.sleep(1)
        else:
            pytest.fail("JupyterLab did not answer within 90 s")
        assert status(f"{base}/api/contents") == 403  # no token, no access
        with urllib.request.urlopen(f"{base}/api/contents?token={token}", timeout=5) as r:
            names = r.read().decode()
        assert "00_baseline.ipynb" in names  # it serves the course's notebooks
        assert status(f"{base}/lab?token={token}") == 200
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
