"""The download code against a real HTTP server on 127.0.0.1 that misbehaves in every usual way."""

import gzip
import http.server
import subprocess
import sys
import threading
from collections import Counter

import pytest
from conftest import ROOT

from lenet5.data import download
from lenet5.data.idx import DataError


class Mirror(http.server.ThreadingHTTPServer):
    """Serves {path: bytes}; a path mapped to a callable gets the handler to misbehave with."""

    daemon_threads = True

    def __init__(self, files):
        self.files, self.requests, self.stop = files, Counter(), threading.Event()
        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def close(self):
        self.stop.set()
        self.shutdown()
        self.server_close()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests[self.path] += 1
        body = self.server.files.get(self.path)
        if callable(body):
            return body(self)
        if body is None:
            return self.send_error(404)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep the test output clean
        pass


def html_page(handler):  # what yann.lecun.com answers now
    body = b"<html><body><h1>403 Forbidden</h1></body></html>"
    handler.send_response(200)
    handler.send_header("Content-Type", "text/html")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def hang(handler):  # accepts, then says nothing (until the test ends)
    handler.server.stop.wait(20)


def cut_short(handler):  # promises more bytes than it sends, then hangs up
    handler.send_response(200)
    handler.send_header("Content-Length", "100000")
    handler.end_headers()
    handler.wfile.write(b"\x1f\x8b\x08\x00" + b"\x00" * 100)


@pytest.fixture
def serve():
    servers = []

    def start(files):
        servers.append(Mirror(files))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def good_files(raw):
    return {f"/{name}.gz": gzip.compress(content) for name, content in raw.items()}


def bad_mirrors(serve, raw):
    """Every way a mirror fails, each as a base URL, and what the error must say about it."""
    good = good_files(raw)
    truncated = {path: body[: len(body) // 2] for path, body in good.items()}
    wrong = {path: gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07") for path in good}
    closed = Mirror({})
    refused_url = closed.url
    closed.close()  # nothing listens there any more
    return [
        (serve({p: html_page for p in good}).url, "Not a gzipped file"),
        (serve({}).url, "HTTP Error 404"),
        (serve(truncated).url, "end-of-stream marker"),
        (serve({p: cut_short for p in good}).url, "IncompleteRead(104 bytes read, 99896 more expected)"),
        (serve(wrong).url, "wrong content (SHA-256"),
        (refused_url, "Connection refused"),
        (serve({p: hang for p in good}).url, "timed out"),
    ]


def test_every_fault_falls_through_to_the_next_mirror(tiny_mnist, serve, monkeypatch):
    _, cache, raw = tiny_mnist
    monkeypatch.setattr(download, "TIMEOUT", 1.0)
    bad = bad_mirrors(serve, raw)
    good = serve(good_files(raw))
    monkeypatch.setenv("LENET5_MNIST_MIRRORS", ",".join([url for url, _ in bad] + [good.url]))
    assert download.load_mnist(cache, progress=False)["train_images"].shape == (12, 28, 28)
    assert all(count == 1 for count in good.requests.values()) and len(good.requests) == 4


def test_when_every_mirror_fails_the_error_names_each_and_its_cause(tiny_mnist, serve, monkeypatch):
    _, cache, raw = tiny_mnist
    monkeypatch.setattr(download, "TIMEOUT", 1.0)
    bad = bad_mirrors(serve, raw)
    monkeypatch.setenv("LENET5_MNIST_MIRRORS", ",".join(url for url, _ in bad))
    with pytest.raises(DataError) as error:
        download.load_mnist(cache, progress=False)
    lines = str(error.value).splitlines()
    for url, cause in bad:
        assert any(line.strip().startswith(url) and cause in line for line in lines), (url, cause, "\n".join(lines))
    assert "LENET5_MNIST_MIRRORS" in lines[-1]


def test_eight_processes_on_an_empty_cache_download_each_file_once(mnist_dir, serve, tmp_path):
    raw = {name: (mnist_dir / name).read_bytes() for name in download.FILES}
    server = serve(
        {path: body for path, body in {f"/{n}.gz": gzip.compress(r, compresslevel=1) for n, r in raw.items()}.items()}
    )
    cache = tmp_path / "cache"
    code = (
        "from lenet5.data import download; "
        f"print(len(download.load_mnist({str(cache)!r}, progress=False)['train_labels']))"
    )
    env = {"LENET5_MNIST_MIRRORS": server.url, "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(8)
    ]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 8, outputs
    assert [out.strip() for out, _ in outputs] == ["60000"] * 8
    assert server.requests == Counter({f"/{name}.gz": 1 for name in download.FILES})
