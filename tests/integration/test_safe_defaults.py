"""Start-up behaviour an operator relies on: clear config errors, warnings, no secrets in logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import requests
from sqlalchemy.engine import make_url

from tests.helpers import free_port


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "processor", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def serve_briefly(env: dict[str, str]) -> str:
    """Start `serve`, wait until ready, SIGTERM it; returns its log output."""
    http_port = free_port()
    env = {**os.environ, **env, "PORT": str(free_port()), "HTTP_PORT": str(http_port)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "processor", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{http_port}/readiness", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    return out


def test_invalid_setting_stops_start_with_one_line_naming_it(tmp_path):
    result = run_cli(
        "serve", env={"PORT": "abc", "ANALYTICS_DATABASE_URL": f"sqlite:///{tmp_path}/a.db"}
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "PORT" in lines[0]
    short_key = run_cli("hash-id", "x", env={"USER_ID_HASH_KEY": "too-short"})
    assert short_key.returncode == 2 and "USER_ID_HASH_KEY" in short_key.stderr


def test_listening_beyond_loopback_without_keys_or_tls_warns(tmp_path):
    out = serve_briefly(
        {"BIND_ADDRESS": "0.0.0.0", "ANALYTICS_DATABASE_URL": f"sqlite:///{tmp_path}/a.db"}
    )
    assert "listening_unprotected" in out
    quiet = serve_briefly({"ANALYTICS_DATABASE_URL": f"sqlite:///{tmp_path}/b.db"})
    assert "listening_unprotected" not in quiet
    assert '"address": "127.0.0.1"' in quiet


def test_secrets_never_reach_the_logs(postgres_url):
    password = "pw-Sekr1t-do-not-log"
    api_key = "key-Sekr1t-do-not-log"
    hash_key = "hash-key-Sekr1t-do-not-log-0123456789"
    url = make_url(postgres_url).set(password=password).render_as_string(hide_password=False)
    out = serve_briefly(
        {
            "ANALYTICS_DATABASE_URL": url,
            "API_KEYS": api_key,
            "USER_ID_HASH_KEY": hash_key,
            "LOG_LEVEL": "DEBUG",
        }
    )
    assert '"event": "started"' in out
    for secret in (password, api_key, hash_key):
        assert secret not in out
