"""nginx `proxy_pass` in front of the users service, when nginx is installed (never required)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kit.procs import http_status
from kit.servers import free_port

_CONFIG = """\
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream users {{
        server {upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://users;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


class NginxError(RuntimeError):
    """nginx is installed but would not start or answer."""


def nginx_binary() -> str | None:
    """The nginx on PATH (or in /usr/sbin), if any."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


@contextmanager
def nginx_proxy(binary: str, *, upstream_url: str, workdir: Path) -> Iterator[str]:
    """Run nginx proxying to `upstream_url` (one worker, keep-alive upstream); yield its URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    upstream = upstream_url.removeprefix("http://").rstrip("/")
    config = workdir / "nginx.conf"
    config.write_text(_CONFIG.format(dir=workdir, upstream=upstream, port=port))
    # -e: the error log before the config is read, which would otherwise be /var/log/nginx.
    argv = [binary, "-p", str(workdir), "-c", str(config), "-e", str(workdir / "error.log")]
    log = (workdir / "stdout.log").open("wb")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            if process.poll() is not None:
                raise NginxError(f"nginx exited with {process.returncode}: {_tail(workdir)}")
            if http_status(f"{url}/healthz", timeout=0.5) is not None:
                break
            time.sleep(0.1)
        else:
            raise NginxError(f"nginx did not answer on {url} within 10 s")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _tail(workdir: Path) -> str:
    lines = (workdir / "error.log").read_text(errors="replace").strip().splitlines()
    return lines[-1] if lines else "no error logged"
