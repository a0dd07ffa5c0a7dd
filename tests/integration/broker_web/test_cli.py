"""`netpay broker serve --web-addr`: the ready line gives the portal's URL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import requests

from broker.web import SECRET_FILE


def test_serve_with_web_addr_prints_the_web_url(tmp_path: Path) -> None:
    data_dir = tmp_path / "b"
    argv = [
        sys.executable,
        "-m",
        "netpay.cli.main",
        "broker",
        "serve",
        "--data-dir",
        str(data_dir),
        "--grpc-addr",
        "127.0.0.1:0",
        "--web-addr",
        "127.0.0.1:0",
    ]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            ready = json.loads(proc.stdout.readline())
            assert set(ready) == {"grpc", "web"}
            assert ready["web"].startswith("http://127.0.0.1:")
            assert int(ready["web"].rsplit(":", 1)[1]) > 0
            assert requests.get(ready["web"] + "/healthz", timeout=10).text == "ok\n"
            start = requests.get(ready["web"] + "/", timeout=10)
            assert start.status_code == 200 and "Open an account" in start.text
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    assert out == ""
    secret = data_dir / SECRET_FILE
    assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_bytes()) == 32
