"""`make lab` (scripts/lab.py): JupyterLab on loopback with token authentication on, a login URL that the
learner can use printed in full, and the token in no process's command line (checked with real requests)."""

import importlib.util
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("lab", ROOT / "scripts" / "lab.py")
lab = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lab)
URL_RE = re.compile(r"(http://127\.0\.0\.1:(\d+)/lab\?token=(\w+))")
LINUX = Path("/proc/net/tcp").exists()
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(url: str) -> int:
    try:
        with NO_PROXY.open(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


def cmdlines() -> dict[int, bytes]:
    lines = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            lines[int(proc.name)] = (proc / "cmdline").read_bytes()
        except OSError:
            pass
    return lines


def listening(port: int) -> list[str]:
    """The addresses a socket listens on at ``port`` (from /proc/net/tcp and tcp6)."""
    found = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hex_port = local.split(":")
            if int(hex_port, 16) != port or state != "0A":  # 0A: LISTEN
                continue
            # the kernel prints the address as 32-bit words in host byte order
            raw = b"".join(struct.pack("=I", int(addr[i:i + 8], 16)) for i in range(0, len(addr), 8))
            found.append(socket.inet_ntop(family, raw))
    return found


def test_the_token_goes_in_the_environment_not_the_command_line(monkeypatch):
    env = lab.server_env({"PATH": "/bin"})
    assert re.fullmatch(r"[0-9a-f]{48}", env["JUPYTER_TOKEN"]) and env["PATH"] == "/bin"
    assert lab.server_env({"JUPYTER_TOKEN": "mine"})["JUPYTER_TOKEN"] == "mine"
    cmd = lab.jupyter_command(Path("/x/workspace"), 8899, open_browser=False)
    assert "--ServerApp.ip=127.0.0.1" in cmd and "--no-browser" in cmd
    assert not any("token" in arg.lower() for arg in cmd)
    assert ("--allow-root" in cmd) == (os.geteuid() == 0)
    assert lab.login_url(8899, "abc") == "http://127.0.0.1:8899/lab?token=abc"


@pytest.mark.slow
def test_make_lab_prints_a_login_url_that_works_and_keeps_the_token_private(tmp_path):
    if not (ROOT / ".venv" / ".installed").exists():
        pytest.skip("make lab needs the .venv that `make test` creates")
    port, ws = free_port(), tmp_path / "ws"
    env = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_TOKEN", "DISPLAY", "WAYLAND_DISPLAY")}
    env.update(BROWSER="true", JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    # -o: never reinstall the .venv from here, even if pyproject.toml is newer than its stamp
    cmd = ["make", "-s", "-o", ".venv/.installed", "lab", f"PORT={port}", f"WORKSPACE={ws}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            found = URL_RE.search("".join(output))
            if found:
                break
            time.sleep(0.5)
        else:
            pytest.fail("make lab printed no login URL within 180 s:\n" + "".join(output)[-3000:])
        url, printed_port, token = found.group(1), int(found.group(2)), found.group(3)
        base = f"http://127.0.0.1:{printed_port}"
        assert printed_port == port and len(token) >= 32
        assert status(url) == 200  # the printed URL logs in
        assert status(f"{base}/api/contents") == 403  # no token, no access
        assert status(f"{base}/api/contents?token=wrong") == 403
        with NO_PROXY.open(f"{base}/api/contents?token={token}", timeout=10) as r:
            assert "00_baseline.ipynb" in r.read().decode()  # it serves the learner's copies
        assert (ws / "00_baseline.ipynb").exists()  # made on first use
        if LINUX:  # /proc: every process's command line, every listening socket
            leaks = [pid for pid, line in cmdlines().items() if token.encode() in line]
            assert leaks == [], "the token is on a command line"
            assert listening(port) == ["127.0.0.1"]  # loopback only
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as a terminal sends it to make and scripts/lab.py
        try:
            rc = proc.wait(timeout=60)
        finally:
            stray = [pid for pid, line in cmdlines().items() if str(ws).encode() in line]
            for pid in stray:
                os.kill(pid, signal.SIGKILL)
    reader.join(timeout=10)
    assert stray == [], "JupyterLab outlived make lab"
    assert not LINUX or listening(port) == []
    assert "Stopping JupyterLab" in "".join(output), rc
