"""The real server: uvicorn on 127.0.0.1 and a free port, reachable there only, stopped by the
test; ``vexplain serve`` prints its URL and fails on bad arguments with one line and exit 2."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

from viewer_helpers import demo_model

from vexplain.cli.main import main
from vexplain.core.extras import MissingExtra, require_extra
from vexplain.viewer.app import create_app
from vexplain.viewer.security import allowed_hosts_for, is_loopback
from vexplain.viewer.server import start_in_thread


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def connects(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(5)
        return probe.connect_ex((host, port)) == 0


def test_the_server_binds_loopback_only_and_stops():
    running = start_in_thread(create_app(demo_model()), "127.0.0.1", 0)
    try:
        host, port = running.sock.getsockname()[:2]
        assert host == "127.0.0.1" and port > 0 and running.url == f"http://127.0.0.1:{port}/"
        assert get_json(running.url + "api/model")["name"] == "demo_cnn"
        # bound to 127.0.0.1 itself, not to every address: another loopback address is refused
        assert not connects("127.0.0.2", port)
    finally:
        running.stop()
    assert not running.thread.is_alive()
    assert not connects("127.0.0.1", port)


def test_loopback_names():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.0.0.5")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    assert set(allowed_hosts_for("127.0.0.1")) == {"127.0.0.1", "localhost", "::1"}
    assert allowed_hosts_for("0.0.0.0") is None


def test_vexplain_serve_prints_its_url_and_serves_the_demo_model():
    command = [sys.executable, "-c", "from vexplain.cli.main import run; run()", "serve", "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = process.stdout.readline()
        assert "vexplain viewer for PyTorch model 'demo_cnn'" in line, line + process.stderr.read() if process.poll() is not None else line
        url = line.split(": ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/")
        names = [m["name"] for m in get_json(url + "api/methods")]
        assert "gradcam" in names and "occlusion" in names
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, process.stderr.read()


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--port", "70000"], "--port must be in 0..65535"),
        (["--weights", "w.pt"], "--weights needs a MODEL"),
        (["--max-upload-mb", "0"], "must be positive"),
        (["no_such_model.onnx"], "no_such_model.onnx"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(capsys, arguments, expected):
    assert main(["serve", *arguments]) == 2
    error = capsys.readouterr().err
    assert expected in error and error.count("\n") == 1 and "Traceback" not in error


def test_a_busy_port_is_one_line(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        assert main(["serve", "--port", str(taken.getsockname()[1])]) == 2
    error = capsys.readouterr().err
    assert "cannot listen on 127.0.0.1:" in error and "choose another --port" in error


def test_a_missing_extra_names_it():
    with pytest.raises(MissingExtra) as caught:
        require_extra("vexplain_no_such_module", "serve", "vexplain serve")
    assert str(caught.value) == "vexplain serve needs the 'serve' extra (vexplain_no_such_module is not installed): pip install 'vexplain[serve]'"
