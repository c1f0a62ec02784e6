"""Start JupyterLab on the course (``make lab``) and print the URL to log in with.

* Loopback only (127.0.0.1) and token authentication on.
* The token never appears on a command line, where any local user could read it in the process list:
  it is ``JUPYTER_TOKEN`` if that is set, else a fresh random one, and it reaches Jupyter through the
  environment (jupyter_server reads ``JUPYTER_TOKEN``). Jupyter masks a token it did not generate in
  its own log (``?token=...``), so this script prints the full login URL itself once the server answers.
* It serves your own copies of the lessons in ``workspace/``, made on first use (``make workspace``).
* Ctrl-C (or SIGTERM, SIGHUP) stops the server cleanly: it is passed on as SIGTERM; a second one kills.
* The browser opens by itself only where there is a display; on a headless machine, tunnel the port
  (``ssh -L PORT:127.0.0.1:PORT host``) and open the printed URL.

    python scripts/lab.py [--port 8888] [--root workspace] [--no-browser] [extra `jupyter lab` options]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "scripts") not in sys.path:  # also when a test loads this file by its path
    sys.path.insert(0, str(ROOT / "scripts"))
import workspace  # noqa: E402

HOST = "127.0.0.1"
READY_TIMEOUT = 300  # seconds; a first start on a busy two-core machine can take a minute


def server_env(environ: dict | None = None) -> dict:
    """The server's environment: ``environ`` with ``JUPYTER_TOKEN`` set (kept if set, else random)."""
    env = dict(os.environ if environ is None else environ)
    if not env.get("JUPYTER_TOKEN"):
        env["JUPYTER_TOKEN"] = secrets.token_hex(24)
    return env


def has_display() -> bool:
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or
                                                         os.environ.get("WAYLAND_DISPLAY"))


def jupyter_command(root: Path, port: int, open_browser: bool, extra: list[str] = ()) -> list[str]:
    """``jupyter lab`` on loopback, serving ``root``; the token is not in it."""
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.ip={HOST}", f"--ServerApp.port={port}",
           f"--ServerApp.root_dir={root}"]
    if not open_browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI machines often run as root
    return cmd + list(extra)


def login_url(port: int, token: str, base_url: str = "/") -> str:
    return f"http://{HOST}:{port}{base_url}lab?{urllib.parse.urlencode({'token': token})}"


def server_info(pid: int) -> dict | None:
    """What the server with this pid wrote to its ``jpserver-<pid>.json`` (port, token...), once written."""
    from jupyter_core.paths import jupyter_runtime_dir

    try:
        return json.loads((Path(jupyter_runtime_dir()) / f"jpserver-{pid}.json").read_text())
    except (OSError, ValueError):
        return None


def answers(port: int, token: str, base_url: str = "/") -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
    req = urllib.request.Request(f"http://{HOST}:{port}{base_url}api/status",
                                 headers={"Authorization": f"token {token}"})
    try:
        with opener.open(req, timeout=5) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError):
        return False


class Stopper:
    """Signal handler: pass the first signal on to the server as SIGTERM, kill it on the next."""

    def __init__(self):
        self.child: subprocess.Popen | None = None
        self.signals = 0

    def __call__(self, signum, frame):
        self.signals += 1
        if self.child is None or self.child.poll() is not None:
            return
        if self.signals == 1:
            print("\nStopping JupyterLab (press Ctrl-C again to kill it at once)...", file=sys.stderr,
                  flush=True)
            self.child.terminate()
        else:
            self.child.kill()


def banner(url: str, port: int) -> str:
    return (f"\n    JupyterLab is ready. To log in, open this URL in a browser on this machine:\n\n"
            f"        {url}\n\n"
            f"    From another machine, first tunnel the port: ssh -L {port}:{HOST}:{port} <this machine>\n"
            f"    Ctrl-C stops the server.\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8888, help="first port to try (Jupyter moves up if busy)")
    ap.add_argument("--root", type=Path, default=workspace.WORKSPACE,
                    help="the folder to serve (default: workspace/, made with the lessons if missing)")
    ap.add_argument("--no-browser", action="store_true", help="do not open a browser")
    args, extra = ap.parse_known_args(argv)

    root = args.root.resolve()
    if not root.exists():
        copied, skipped = workspace.copy_lessons(root)
        print(workspace.report(args.root, copied, skipped), flush=True)
    elif root == workspace.WORKSPACE.resolve() and workspace.missing(root):
        print(f"lessons not in your {args.root}/ yet: {', '.join(workspace.missing(root))} "
              f"(`make workspace` copies them)", flush=True)

    env = server_env()
    stopper = Stopper()
    handled = [s for s in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, s)]
    for name in handled:
        signal.signal(getattr(signal, name), stopper)
    cmd = jupyter_command(root, args.port, has_display() and not args.no_browser, extra)
    # Its own session: a Ctrl-C in the terminal reaches this script only, which stops the server with
    # SIGTERM (without the server's "Shutdown this Jupyter server (y/[n])?" question).
    stopper.child = child = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                             start_new_session=True)
    if stopper.signals:
        child.terminate()

    deadline = time.monotonic() + READY_TIMEOUT
    port, token, base_url, shown = args.port, env["JUPYTER_TOKEN"], "/", False
    while child.poll() is None and not stopper.signals:
        info = server_info(child.pid)  # where it listens (it moves up from a busy port), its token
        if info:
            port, token, base_url = info["port"], info.get("token") or token, info.get("base_url", "/")
            if answers(port, token, base_url):
                print(banner(login_url(port, token, base_url), port), flush=True)
                shown = True
                break
        if time.monotonic() > deadline:
            print(f"JupyterLab has not answered after {READY_TIMEOUT} s; its login URL should be\n"
                  f"    {login_url(port, token, base_url)}", flush=True)
            shown = True
            break
        time.sleep(0.5)
    rc = child.wait()
    if not shown and not stopper.signals:
        print("JupyterLab stopped before it was ready (see its messages above).", file=sys.stderr)
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(main())
