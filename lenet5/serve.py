"""Draw a digit in the browser and watch LeNet-5 see it: a local web app for any trained run.

    python -m lenet5.serve runs/pytorch-max-relu-seed0-...     # prints http://127.0.0.1:8000/
    python -m lenet5.serve                                     # the shipped model (models/lenet5/)
    python -m lenet5.serve runs/<run>/model.onnx --port 8080
    python -m lenet5.serve model.npz --host 0.0.0.0 --port 0   # every interface, any free port
    curl -s --data-binary @digit.png http://127.0.0.1:8000/api/predict

One page (lenet5/serve_static/): a canvas to draw on (mouse, pen or touch) or a picture to upload,
the class probabilities updated while drawing, the preprocessing as predict does it
(lenet5.data.images.steps) and every layer's output. The layers, and for a run folder or a model.npz
the probabilities too, come from the neutral weights through the numpy reference
(lenet5/network/reference.py), so a run of any framework is served without that framework; an .onnx
file is run by onnxruntime, with the layers from the model.npz beside it if there is one. The
page fetches nothing from outside. POST /api/predict takes a picture (the raw bytes, or a
multipart form's file) and answers JSON; a bad picture gets a 4xx status and a message.
"""

import base64
import errno
import io
import socket
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from . import pretrained
from .arguments import HelpFormatter, Parser, non_negative_int, prog
from .convert import ConvertError
from .data import images
from .data.splits import normalize
from .models import ModelError, open_model
from .network import reference, weights
from .training.runfolder import RunError, RunFolder

PROG = prog("lenet5.serve")
STATIC = Path(__file__).with_name("serve_static")
MAX_BYTES = 8 * 1024 * 1024  # a request's body: a phone photo fits; more is refused before it is read
MAX_PIXELS = 16_000_000  # below images.MAX_PIXELS: twenty decodes at once must fit in memory too
THUMBNAIL = 140  # the preprocessing's large stages are sent at most this size: they are for showing
DIGITS = 4  # decimals of the layer values sent: enough for any colour scale


class ServeError(Exception):
    """The address cannot be listened on; the message says why in one line."""


def load_model(source):
    """A Model (lenet5.models) to serve from a run folder (of any framework), a model.npz or an
    .onnx file, with a line saying what it is (`what`) and, if the layer maps cannot be shown, why
    (`note`); ModelError, RunError or WeightsError say why one cannot be served."""
    model = open_model(source, neutral=True)
    path = Path(source)
    if model.kind == "onnx":  # the layer maps come from the neutral weights beside it, if any
        beside = path.with_name(weights.FILENAME)
        model.note = (
            f"layer maps need the neutral weights: {weights.FILENAME} beside {path.name} (python -m lenet5.convert)"
        )
        if beside.is_file():
            try:
                model.params, model.meta = weights.load(beside)
                model.note = None
            except weights.WeightsError as error:
                model.note = f"no layer maps: {error}"
        model.what = f"{_short(path)} (onnxruntime)"
    elif path.is_dir():
        result = RunFolder(path).result() or {}
        accuracy = f"; test accuracy {result['test_accuracy']:.2%}" if "test_accuracy" in result else ""
        model.what = f"{_short(path)} ({_describe(model.meta)}{accuracy})"
    else:
        model.what = f"{_short(path)} ({_describe(model.meta)})"
    return _named(model)


def _named(model):
    """The model, with class names that fit its outputs (a file outside its run folder gets the
    digits, or numbers if it has another number of classes); one forward pass checks that it runs."""
    count = len(layers_and_logits(model, normalize(np.zeros((1, images.SIZE, images.SIZE), np.uint8)))[1])
    if len(model.classes) != count:
        model.classes = [str(i) for i in range(count)]
    return model


def _short(path):
    """The run folder's name, or a file's with its folder's: what the page's header says."""
    path = Path(path).resolve()
    return path.name if path.is_dir() else f"{path.parent.name}/{path.name}"


def _describe(meta):
    """The weights' framework and architecture, as the header says them: "pytorch, max pooling, relu"."""
    arch = meta.get("arch", "lenet5")
    layers = f"{meta.get('pooling')} pooling, {meta.get('activation')}" if arch == "lenet5" else arch
    return f"{meta.get('framework') or 'neutral'}, {layers}"


def layer_outputs(params, meta, x):
    """[(layer name, its output)] of one image `x` (1, 1, 28, 28), c1 to output: the one call to the
    numpy reference's forward pass."""
    return list(reference.trace(params, x, meta["pooling"], meta["activation"], meta["arch"]))


def layers_and_logits(model, x):
    """(the layers' outputs or None, the logits) of the one image `x`: the numpy reference gives
    both where there are neutral weights; an .onnx file's logits are onnxruntime's."""
    layers = layer_outputs(model.params, model.meta, x) if model.params is not None else None
    if model.session is not None:
        return layers, model.logits(x)[0]
    return layers, layers[-1][1][0]  # the output layer's values are the logits


def picture(data):
    """The request's bytes as a grey picture (images.load_image), refused when empty or too large."""
    if not data:
        raise images.ImageError("empty request: send a picture (PNG, JPEG, ...)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception:  # load_image says what is wrong with it
        pass
    else:
        if width * height > MAX_PIXELS:
            raise images.ImageError(
                f"too large: more than {MAX_PIXELS // 1_000_000} million pixels ({width} x {height}); scale it down"
            )
    return images.load_image(io.BytesIO(data))


def analyse(model, data):
    """The answer to one picture: the probabilities, the preprocessing's stages, the 28x28 image the
    model sees, and every layer's output. Raises images.ImageError for a picture that is no digit."""
    stages = images.steps(picture(data))
    digit = stages["mnist"]
    layers, logits = layers_and_logits(model, normalize(digit[None]))
    probabilities = reference.softmax(np.asarray(logits, np.float64)[None])[0]
    ys, xs = np.indices(digit.shape)
    mass = float(digit.sum())
    return {
        "classes": model.classes,
        "probabilities": [round(float(p), 6) for p in probabilities],
        "prediction": model.classes[int(np.argmax(probabilities))],
        "image": digit.tolist(),
        "steps": {
            "ink": png(stages["ink"], THUMBNAIL),
            "cropped": png(stages["cropped"], THUMBNAIL),
            "scaled": png(stages["scaled"]),
            "mnist": png(digit),
            "cropped_size": list(stages["cropped"].shape),
            "scaled_size": list(stages["scaled"].shape),
            "centre_of_mass": [float((ys * digit).sum()) / mass, float((xs * digit).sum()) / mass],
        },
        "layers": None if layers is None else [_layer(name, value[0]) for name, value in layers],
        "note": model.note,
    }


def _layer(name, value):
    """One layer's output for the page: feature maps (maps, height, width), or a vector of units."""
    maps = value.ndim == 3 and value.shape[1] > 1
    value = value if maps else value.reshape(-1)
    return {"name": name, "kind": "maps" if maps else "units", "shape": list(value.shape), "values": _rounded(value)}


def _rounded(value):
    return np.round(np.asarray(value, np.float64), DIGITS).tolist()


def png(array, largest=None):
    """A uint8 image as a data: URL of a PNG, scaled down to `largest` pixels on its longer side."""
    image = Image.fromarray(np.asarray(array, np.uint8))
    if largest:
        image.thumbnail((largest, largest), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def status_of(error):
    """The HTTP status for a picture that cannot be used: 413 too large, 422 no digit on it (an
    empty canvas), 400 anything else (not a picture, a damaged one, an empty request)."""
    text = str(error)
    return 413 if text.startswith("too large") else 422 if text.startswith("no digit") else 400


class TooLarge(Exception):
    """A request's body over MAX_BYTES."""


async def body_of(request):
    """The request's picture: its body, or the file in its multipart form; at most MAX_BYTES read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BYTES:
        raise TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BYTES:
            raise TooLarge
        chunks.append(chunk)
    body = b"".join(chunks)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return body

    async def replay():  # the form parser reads the body again, from what was read above
        return {"type": "http.request", "body": body, "more_body": False}

    async with Request(request.scope, replay).form(max_files=1) as form:
        files = [value for value in form.values() if hasattr(value, "read")]
        if not files:
            raise images.ImageError("a form without a file: send the picture as its one file")
        return await files[0].read()


def make_app(model):
    """The Starlette app serving `model`: the page, GET /api/model and POST /api/predict."""

    async def page(request):
        return FileResponse(STATIC / "index.html")

    async def info(request):
        return JSONResponse(
            {
                "model": str(model.source),
                "what": model.what,
                "classes": model.classes,
                "layers": model.params is not None,
                "note": model.note,
            }
        )

    async def predict(request):
        try:
            data = await body_of(request)
            start = time.perf_counter()
            # numpy and onnxruntime work outside the event loop, so requests are answered side by side
            answer = await run_in_threadpool(analyse, model, data)
            took = f"analyse;dur={(time.perf_counter() - start) * 1000:.1f}"  # the page shows it
            return JSONResponse(answer, headers={"Server-Timing": took})
        except TooLarge:
            return error(413, f"too large: more than {MAX_BYTES // (1024 * 1024)} MB")
        except images.ImageError as problem:
            return error(status_of(problem), str(problem))
        except HTTPException as problem:  # a multipart form that does not parse, as Starlette says it
            return error(400, f"not a picture, nor a form holding one ({problem.detail})")
        except ClientDisconnect:  # the client went away while sending: nobody reads the answer
            return error(400, "the request was cut short")

    routes = [
        Route("/", page),
        Route("/api/model", info),
        Route("/api/predict", predict, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes)


def error(status, message):
    return JSONResponse({"error": message}, status_code=status)


def bind(host, port):
    """A listening socket on (host, port), port 0 for any free one; ServeError says why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as problem:
        raise ServeError(f"--host {host}: not an address of this machine ({problem.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart at once after a stop
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as problem:
        sock.close()
        if problem.errno == errno.EADDRINUSE:
            raise ServeError(f"port {port} is in use on {host}: choose another with --port (0: any free one)") from None
        raise ServeError(f"cannot listen on {host} port {port}: {problem.strerror}") from None
    return sock


def url_of(sock):
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def build_parser(prog=PROG):
    parser = Parser(prog=prog, description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument(
        "model",
        nargs="?",
        metavar="RUN",
        help="a finished run folder (of any framework), a model.npz, or an .onnx file "
        "from python -m lenet5.onnx_export (layer maps from the model.npz beside it); "
        f"left out, the shipped model ({pretrained.model_path().relative_to(pretrained.ROOT)})",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (0.0.0.0: every interface, seen by others)"
    )
    parser.add_argument("--port", type=non_negative_int, default=8000, help="the port to listen on (0: any free one)")
    return parser


def main(argv=None):
    import uvicorn

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        model = load_model(args.model or pretrained.model_path())
        if args.model is None:
            model.what = pretrained.describe()
        sock = bind(args.host, args.port)
    except (ServeError, ModelError, RunError, ConvertError, weights.WeightsError) as problem:
        parser.exit(1, f"{parser.prog}: error: {problem}\n")
    print(f"serving {model.what} at {url_of(sock)} (Ctrl-C to stop)", flush=True)
    server = uvicorn.Server(uvicorn.Config(make_app(model), log_level="warning", access_log=False, lifespan="off"))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn has stopped serving, and passes Ctrl-C on
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
