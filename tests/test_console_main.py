"""`python -m console` (what `./dev console` runs) as a process: it serves the service's policies on
loopback, logs JSON lines, and refuses to start where it would be unsafe."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

from tests.consoletools import ROOT, _free_port, grpc_target


def test_the_console_process_serves_the_running_service_and_logs_json(console_service, tmp_path):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "console", "--service", grpc_target(console_service[0]),
                             "--port", str(port), "--reports", str(tmp_path)],
                            cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/?q=not-logged", timeout=5) as reply:
                    page = reply.read().decode()
                    headers = reply.headers
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the console did not start"
                time.sleep(0.2)
        assert "6 policies served" in page and headers["Cache-Control"] == "no-store"
        assert "Server" not in headers  # uvicorn's server header is off
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(line["message"] == "console serving" and line["url"] == f"http://127.0.0.1:{port}/" for line in lines)
    [access] = [line for line in lines if line["logger"] == "cms_policy.console.access"]
    assert (access["path"], access["status"]) == ("/", 200) and "not-logged" not in json.dumps(access)


def test_off_loopback_without_tls_it_does_not_start():
    run = subprocess.run([sys.executable, "-m", "console", "--host", "0.0.0.0"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "needs --tls-cert and --tls-key" in run.stderr


def test_a_case_folder_that_does_not_exist_is_refused_at_start():
    run = subprocess.run([sys.executable, "-m", "console", "--cases-folder", "/nonexistent/fee-cases"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--cases-folder /nonexistent/fee-cases: no such folder" in run.stderr
