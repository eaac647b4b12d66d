"""python -m lenet5.serve as a user starts it: it prints its URL, serves, stops on Ctrl-C; a RUN
that cannot be served, or a port in use, gets one line and a non-zero exit."""

import re
import signal
import socket
import subprocess
import sys

import httpx
from serving import DRAWINGS, drawn_png, trained_run  # noqa: F401 - a fixture

COMMAND = [sys.executable, "-m", "lenet5.serve"]


def serve(*args):
    return subprocess.run([*COMMAND, *map(str, args)], capture_output=True, text=True, timeout=120)


def test_it_prints_its_url_on_the_loopback_interface_serves_and_stops_on_ctrl_c(trained_run):  # noqa: F811
    with subprocess.Popen([*COMMAND, str(trained_run), "--port", "0"], stdout=subprocess.PIPE, text=True) as proc:
        try:
            line = proc.stdout.readline()
            found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            assert found, line
            assert "<canvas" in httpx.get(found[0], timeout=30).text
            answer = httpx.post(found[0] + "api/predict", content=drawn_png(DRAWINGS["7"]), timeout=30).json()
            assert answer["prediction"] == "7"
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
    assert proc.returncode in (0, 130)  # 130: as a shell reports Ctrl-C


def test_a_run_that_cannot_be_served_gets_one_line(trained_run, tmp_path):  # noqa: F811
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not a model")
    (tmp_path / "model.npz").write_bytes(b"not an npz")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text((trained_run / "config.json").read_text())
    cases = {
        tmp_path / "nothing": "no such run folder or file",
        tmp_path / "empty": "not a run folder",
        tmp_path / "notes.txt": "not a run folder, a model.npz or an .onnx file",
        tmp_path / "model.npz": "not an .npz weight file",
        tmp_path / "missing.onnx": "no such file",
        unfinished: "the run has not finished",
    }
    for path, message in cases.items():
        proc = serve(path, "--port", "0")
        assert proc.returncode == 1 and proc.stdout == "", (path, proc.stdout, proc.stderr)
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, (path, proc.stderr)


def test_a_port_in_use_a_bad_port_and_a_foreign_address_get_one_line(trained_run):  # noqa: F811
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = serve(trained_run, "--port", port)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and f"port {port} is in use" in proc.stderr
    proc = serve(trained_run, "--port", "-1")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--port" in proc.stderr
    proc = serve(trained_run, "--host", "192.0.2.1", "--port", "0")  # TEST-NET-1: no machine's address
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "cannot listen on 192.0.2.1" in proc.stderr


def test_help_states_the_defaults():
    proc = serve("--help")
    assert proc.returncode == 0
    assert "(default: 127.0.0.1)" in proc.stdout and "(default: 8000)" in proc.stdout
