"""xconv serve: the JSON API over a real uvicorn, the page in headless Chromium, limits, token, load."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

import xconv
from conftest import REPO
from web_helpers import LiveServer, launch_browser, screenshot
from xconv.demo import chelsea

httpx = pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def catsdogs():
    return xconv.load_model("catsdogs")


@pytest.fixture(scope="module")
def server(catsdogs):
    from xconv.web.app import create_app
    from xconv.web.service import ExplainService

    # 4 ascent steps: the patterns' quality is tested in tests/test_filter_robustness.py; here, the page showing them
    service = ExplainService(catsdogs, filter_options={"steps": 4})
    live = LiveServer(create_app(service, max_upload_bytes=2 * 1024 * 1024,
                                 local_only=True)).start()  # as `xconv serve` runs on loopback
    yield live
    live.stop()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Chelsea as JPEG and PNG, a PNG of a mirrored crop, and broken files."""
    folder = tmp_path_factory.mktemp("photos")
    cat = chelsea()
    Image.fromarray(cat).save(folder / "chelsea.jpg", quality=92)
    Image.fromarray(cat[:, ::-1][40:, 60:]).save(folder / "crop.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (folder / "text.png").write_text("hello")
    (folder / "too large.jpg").write_bytes(b"not a photo, whatever its name says")
    Image.fromarray(np.tile(cat[:1], (1, 2, 1))).save(folder / "strip.png")  # 1 x 902: 0.497 rows when shrunk
    return folder


def cli_prediction(catsdogs, path):
    """What `xconv predict` says for the file: the same decoding and model call."""
    [[(label, score)]] = xconv.predict(catsdogs, [path])
    return label, score


def post(url, path, **fields):
    with open(path, "rb") as handle:
        return httpx.post(url, files={"file": (path.name, handle.read())}, data=fields, timeout=60)


def test_api_answers_models_methods_and_predictions(server, catsdogs, photos):
    [model] = httpx.get(f"{server.url}/api/models").json()
    assert model["name"] == "catsdogs" and model["classes"] == ["cat", "dog"] and "block1_pool" in model["layers"]
    methods = {m["name"] for m in httpx.get(f"{server.url}/api/methods").json()}
    assert {"gradcam", "gradcam++", "scorecam", "saliency"} <= methods and "filters" not in methods
    answer = post(f"{server.url}/api/predict", photos / "chelsea.jpg").json()
    label, score = cli_prediction(catsdogs, photos / "chelsea.jpg")
    assert answer["label"] == label and answer["probability"] == pytest.approx(score, abs=1e-5)
    assert sum(row["probability"] for row in answer["probabilities"]) == pytest.approx(1.0, abs=1e-5)


def decode_data_url(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    import base64

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def test_explain_returns_an_overlay_per_class_and_the_activation_grid(server, photos):
    answer = post(f"{server.url}/api/explain", photos / "chelsea.jpg", method="gradcam", activations="block1_pool",
                  grid="true").json()
    assert [h["class"] for h in answer["heatmaps"]] == [row["class"] for row in answer["probabilities"]]
    overlays = [decode_data_url(h["png"]) for h in answer["heatmaps"]]
    assert all(o.ndim == 3 and max(o.shape[:2]) <= 448 for o in overlays)
    assert not np.array_equal(overlays[0], overlays[1])  # the two classes' maps differ
    assert answer["activations"]["layer"] == "block1_pool" and decode_data_url(answer["activations"]["png"]).size
    other = post(f"{server.url}/api/explain", photos / "chelsea.jpg", method="layercam", classes="predicted").json()
    assert other["method"] == "layercam" and len(other["heatmaps"]) == 1 and "activations" not in other


@pytest.mark.parametrize("name, fields, status, message", [
    ("broken.jpg", {}, 400, "broken.jpg: corrupt or truncated image"),
    ("text.png", {}, 400, "text.png: not an image file"),
    ("chelsea.jpg", {"method": "nope"}, 400, "unknown method 'nope'"),
    ("chelsea.jpg", {"layer": "nope"}, 400, "unknown layer 'nope'"),
    ("chelsea.jpg", {"activations": "predictions"}, 400, "the activation grid needs a layer with a spatial output"),
    ("chelsea.jpg", {"layer": "predictions"}, 400, "gradcam needs a layer with a spatial output"),
    ("chelsea.jpg", {"layer": "rescale"}, 400, "'rescale' (Rescaling) is the input itself"),  # was TF internals
    ("too large.jpg", {}, 400, "too large.jpg: not an image file"),  # the status is not read from the name
    ("chelsea.jpg", {"classes": "some"}, 400, "classes must be"),
    ("chelsea.jpg", {"method": "saliency", "layer": "block1_pool"}, 400, "it takes no layer"),  # was ignored
    ("chelsea.jpg", {"method": "nope"}, 400, "smoothgrad, xgradcam"),  # the whole list, not 200 characters
    ("chelsea.jpg", {"method": "filters"}, 400, "method 'filters' makes no heatmap of a photo"),  # "unknown"
])
def test_bad_requests_get_one_line_and_a_4xx(server, photos, name, fields, status, message):
    response = post(f"{server.url}/api/explain", photos / name, **fields)
    assert response.status_code == status and message in response.json()["error"]
    assert "\n" not in response.json()["error"]


def test_limits_refuse_big_uploads_bombs_and_paths(server, photos, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + os.urandom(3 * 1024 * 1024))
    assert post(f"{server.url}/api/explain", big).status_code == 413
    bomb = tmp_path / "bomb.png"
    Image.new("L", (8000, 5001)).save(bomb)  # a small file, just over the default 40 megapixels
    response = post(f"{server.url}/api/explain", bomb)
    assert response.status_code == 413 and "too large to decode safely" in response.json()["error"]
    for name in ("../../etc/passwd", "/etc/passwd", "chelsea/../x"):
        response = httpx.post(f"{server.url}/api/explain", data={"sample": name})
        assert response.status_code == 404 and "unknown sample" in response.json()["error"]
    assert httpx.get(f"{server.url}/static/../../pyproject.toml").status_code == 404
    assert httpx.get(f"{server.url}/api/samples/chelsea").headers["content-type"] == "image/png"


def test_two_photos_or_a_photo_and_a_sample_are_refused_not_half_used(server, photos):
    """The last 'file' field was explained and the first dropped; a file beside a sample won silently."""
    cat, broken = (photos / "chelsea.jpg").read_bytes(), (photos / "broken.jpg").read_bytes()
    two = httpx.post(f"{server.url}/api/explain", files=[("file", ("a.jpg", cat)), ("file", ("b.jpg", broken))])
    assert two.status_code == 400 and "one photo per request (2 'file' fields" in two.json()["error"]
    both = httpx.post(f"{server.url}/api/predict", files={"file": ("a.jpg", cat)}, data={"sample": "chelsea"})
    assert both.status_code == 400 and "not both" in both.json()["error"]


def test_a_one_pixel_strip_is_explained(server, photos):
    answer = post(f"{server.url}/api/explain", photos / "strip.png", classes="predicted")
    assert answer.status_code == 200, answer.text
    assert decode_data_url(answer.json()["heatmaps"][0]["png"]).shape[:2] == (1, 448)


def test_loopback_server_refuses_other_hosts_and_cross_site_uploads(server, photos):
    """DNS rebinding (a page at evil.example whose name now points at 127.0.0.1) and cross-site forms."""
    port = server.port
    assert httpx.get(f"{server.url}/api/models", headers={"Host": f"evil.example:{port}"}).status_code == 403
    assert httpx.get(f"{server.url}/api/models", headers={"Host": "[::1]evil.example"}).status_code == 403
    for host in ("localhost", "127.0.0.1", "127.0.0.2", "[::1]"):  # what browsers send on loopback
        assert httpx.get(f"{server.url}/api/models", headers={"Host": f"{host}:{port}"}).status_code == 200
    with open(photos / "chelsea.jpg", "rb") as handle:
        data = handle.read()
    foreign = httpx.post(f"{server.url}/api/predict", files={"file": ("c.jpg", data)},
                         headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403 and "another site" in foreign.json()["error"]
    own = httpx.post(f"{server.url}/api/predict", files={"file": ("c.jpg", data)},
                     headers={"Origin": f"http://127.0.0.1:{port}"})
    assert own.status_code == 200
    # An <img src> on another site's page sends no Origin, only Sec-Fetch-Site: no API work for it.
    for site in ("cross-site", "same-site"):  # same-site: another port of localhost
        sneaked = httpx.get(f"{server.url}/api/filters", params={"layer": "block3_pool"},
                            headers={"Sec-Fetch-Site": site})
        assert sneaked.status_code == 403 and "another site" in sneaked.json()["error"]
    for site in ("same-origin", "none"):  # the page's own requests; a URL typed in the address bar
        assert httpx.get(f"{server.url}/api/models", headers={"Sec-Fetch-Site": site}).status_code == 200
    assert httpx.get(f"{server.url}/", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200  # a link to it


def test_filter_patterns_are_computed_once_per_layer(server):
    started = time.perf_counter()
    first = httpx.get(f"{server.url}/api/filters", params={"layer": "block1_pool"}, timeout=120).json()
    first_seconds = time.perf_counter() - started
    started = time.perf_counter()
    again = httpx.get(f"{server.url}/api/filters", params={"layer": "block1_pool"}, timeout=120).json()
    assert again == first and time.perf_counter() - started < first_seconds
    assert len(first["robustness"]) == 16 and decode_data_url(first["png"]).size
    response = httpx.get(f"{server.url}/api/filters", params={"layer": "predictions"})
    assert response.status_code == 400
    # An empty value is the default layer, as no value is (it blamed the heatmaps' default layer).
    assert httpx.get(f"{server.url}/api/filters", params={"layer": ""}, timeout=120).json()["layer"] == \
        httpx.get(f"{server.url}/api/filters", timeout=120).json()["layer"] == "block2_sepconv1"


def test_patterns_computed_before_are_answered_while_the_model_is_busy(catsdogs):
    """A cached layer waited in the model thread's queue behind any ascent or heatmap in progress."""
    import threading

    from xconv.web.app import create_app
    from xconv.web.service import ExplainService

    service, release = ExplainService(catsdogs), threading.Event()
    service._filters["block1_pool"] = {"layer": "block1_pool", "png": b"", "filters": [0], "robustness": None}
    # A long ascent for another layer.
    service.filters = lambda layer: release.wait(30) and {"layer": layer, "png": b"", "filters": [], "robustness": None}
    live = LiveServer(create_app(service)).start()
    try:
        busy = threading.Thread(target=lambda: httpx.get(f"{live.url}/api/filters", params={"layer": "block2_pool"},
                                                         timeout=60))
        busy.start()
        time.sleep(0.5)
        started = time.perf_counter()
        answer = httpx.get(f"{live.url}/api/filters", params={"layer": "block1_pool"}, timeout=20)
        assert answer.status_code == 200 and answer.json()["filters"] == [0]
        assert time.perf_counter() - started < 5
    finally:
        release.set()
        busy.join()
        live.stop()


def test_requests_without_a_layer_get_defaults_that_work(catsdogs):
    """The heatmap's default layer by its path, so a request naming it shares a model call with one that
    leaves it out; the filter patterns' default is a conv or pooling layer (the heatmaps' default, an
    activation, was refused)."""
    from xconv.web.service import ExplainKey, ExplainService

    service = ExplainService(catsdogs)
    assert service.check(ExplainKey("gradcam")) == service.check(ExplainKey("gradcam", catsdogs.default_layer))
    assert service.check(ExplainKey("gradcam")).layer == catsdogs.default_layer
    assert service.pattern_layer(None).path == service.layers[len(service.layers) // 3] == "block2_sepconv1"


def test_openapi_docs_are_served_offline(server):
    page = httpx.get(f"{server.url}/docs").text
    assert "/swagger-ui/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    assert httpx.get(f"{server.url}/swagger-ui/swagger-ui-bundle.js").status_code == 200
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    assert {"/api/models", "/api/methods", "/api/predict", "/api/explain"} <= set(paths)


def test_access_token_is_required_when_set(catsdogs):
    from xconv.web.app import create_app
    from xconv.web.server import access_token
    from xconv.web.service import ExplainService

    assert access_token("127.0.0.1", None, False) is None and access_token("::1", None, False) is None
    assert len(access_token("0.0.0.0", None, False)) >= 24 and access_token("0.0.0.0", None, True) is None
    with pytest.raises(xconv.XconvError, match="--token and --no-token contradict"):  # was served open, token dropped
        access_token("0.0.0.0", "abc", True)
    from urllib.parse import parse_qs, urlsplit

    from xconv.web.server import served_url

    url = served_url("::", 8000, "a+b &c#d")  # a token of the user's own, printed raw, read back as "a b "
    assert url.startswith("http://[::]:8000/?") and parse_qs(urlsplit(url).query)["token"] == ["a+b &c#d"]
    live = LiveServer(create_app(ExplainService(catsdogs), token="s3cret")).start()
    try:
        assert httpx.get(f"{live.url}/api/models").status_code == 401
        assert httpx.get(f"{live.url}/api/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(f"{live.url}/api/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        with httpx.Client(base_url=live.url) as client:  # ?token= once, then the cookie carries it
            answer = client.get("/", params={"token": "s3cret"})
            assert answer.status_code == 200
            # Named for the port: browsers send a cookie to every port of the host (another service there).
            assert list(client.cookies) == [f"xconv_token_{live.port}"]
            assert client.get("/api/methods").status_code == 200
            # A page on another port of this host is same-site: its fetch carries the cookie, and is refused.
            other_port = client.get("/api/methods", headers={"Sec-Fetch-Site": "same-site"})
            assert other_port.status_code == 403 and "another site's page" in other_port.json()["error"]
    finally:
        live.stop()


def test_stopping_never_waits_for_the_model_call_in_progress():
    """Ctrl-C waited for the call in progress (40 s for a slow filter-pattern run): the model thread was a
    ThreadPoolExecutor's, which the interpreter joins at exit. Now closing drops the queued calls, returns
    at once and leaves the running call to a daemon thread."""
    from xconv.web.batching import MicroBatcher

    started, release = threading.Event(), threading.Event()

    def run(key, items):
        started.set()
        release.wait(30)
        return [item * 2 for item in items]

    batcher = MicroBatcher(run)

    async def scenario():
        running = asyncio.ensure_future(batcher.submit("a", 1))
        queued = asyncio.ensure_future(batcher.submit("b", 2))  # another key: waits behind the running call
        await asyncio.to_thread(started.wait, 10)
        await asyncio.sleep(0.1)
        begun = time.perf_counter()
        batcher.close()
        closing = time.perf_counter() - begun
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await queued
        return closing, await running

    closing, answer = asyncio.run(scenario())
    assert closing < 1 and answer == 2  # the call in progress still answers if it finishes in time
    assert all(thread.daemon for thread in threading.enumerate() if thread.name == "xconv-model")
    assert batcher.executor.submit(lambda: 1).cancelled()  # a request arriving while it stops does not wait


def test_a_call_whose_requests_are_all_cancelled_stops_between_its_chunks():
    """The page aborts its request when the user picks another method; the running call stops at its next
    chunk instead of holding the model thread (a RISE call: half a minute), and the next request runs."""
    from xconv.cancel import stop_if_cancelled
    from xconv.web.batching import MicroBatcher

    chunks_run = []

    def run(key, items):
        for chunk in range(200 if key == "slow" else 1):
            stop_if_cancelled()
            chunks_run.append(key)
            time.sleep(0.01)
        return items

    batcher = MicroBatcher(run)

    async def scenario():
        slow = asyncio.ensure_future(batcher.submit("slow", 1))
        await asyncio.sleep(0.3)
        slow.cancel()  # what while_connected does when the client hangs up
        started = time.perf_counter()
        answer = await batcher.submit("fast", 2)
        return answer, time.perf_counter() - started

    answer, waited = asyncio.run(scenario())
    assert answer == 2 and waited < 1 and chunks_run.count("slow") < 100


def test_a_queued_call_whose_clients_all_left_never_starts_and_a_short_answer_fails_every_request():
    """Dropping cancelled requests when a batch formed was not enough: a batch already queued behind other
    work (a filter ascent) ran in full for nobody once its clients left, and Grad-CAM never checks."""
    from xconv.web.batching import MicroBatcher

    ran, release = [], threading.Event()

    def run(key, items):
        ran.append(key)
        if key == "busy":
            release.wait(10)
        return items[:1] if key == "short" else items

    batcher = MicroBatcher(run)

    async def scenario():
        busy = asyncio.ensure_future(batcher.submit("busy", 1))
        await asyncio.sleep(0.1)
        queued = asyncio.ensure_future(batcher.submit("queued", 2))  # formed a batch, waits behind "busy"
        await asyncio.sleep(0.1)
        queued.cancel()
        release.set()
        await busy
        short = [asyncio.ensure_future(batcher.submit("short", n)) for n in (1, 2)]
        return await asyncio.wait_for(asyncio.gather(*short, return_exceptions=True), 5)

    answers = asyncio.run(scenario())
    assert ran == ["busy", "short"]
    assert all(isinstance(a, RuntimeError) and "gave 1 results for 2 requests" in str(a) for a in answers)


def test_other_model_work_stops_once_its_caller_is_cancelled():
    """``MicroBatcher.call`` (the filter patterns) ran to its end after its request was gone."""
    from xconv.cancel import stop_if_cancelled
    from xconv.web.batching import MicroBatcher

    steps = []

    def ascent():
        for _ in range(200):
            stop_if_cancelled()
            steps.append(1)
            time.sleep(0.01)
        return "patterns"

    batcher = MicroBatcher(lambda key, items: items)

    async def scenario():
        patterns = asyncio.ensure_future(batcher.call(ascent))
        await asyncio.sleep(0.3)
        patterns.cancel()
        started = time.perf_counter()
        answer = await batcher.submit("next", 2)
        return answer, time.perf_counter() - started

    answer, waited = asyncio.run(scenario())
    assert answer == 2 and waited < 1 and len(steps) < 100
    assert asyncio.run(batcher.call(lambda: "uncancelled")) == "uncancelled"


def test_requests_cancelled_at_shutdown_leave_no_traceback_in_the_log():
    import logging

    from xconv.web.server import BaseExceptionGroup, drop_cancelled_at_shutdown

    def record(error):
        return logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application", (),
                                 (type(error), error, None) if error else None)

    assert not drop_cancelled_at_shutdown(record(asyncio.CancelledError("graceful shutdown exceeded")))
    assert not drop_cancelled_at_shutdown(record(BaseExceptionGroup("task group", [asyncio.CancelledError()])))
    assert drop_cancelled_at_shutdown(record(ValueError("a real bug")))  # still logged
    assert drop_cancelled_at_shutdown(record(None))


def test_a_client_that_hangs_up_has_its_queued_work_dropped(server, photos, monkeypatch):
    """A page that moved on, or a script that timed out, left its request to be computed anyway, delaying
    every answer after it."""
    import xconv.web.app as web_app

    real = web_app.run_batch

    def slow(service, key, uploads):
        time.sleep(1.5)
        return real(service, key, uploads)

    monkeypatch.setattr(web_app, "run_batch", slow)
    data = (photos / "chelsea.jpg").read_bytes()
    before = httpx.get(f"{server.url}/api/stats").json()["items"]

    def impatient(delay):
        time.sleep(delay)
        with pytest.raises(httpx.TimeoutException):
            httpx.post(f"{server.url}/api/predict", files={"file": ("c.jpg", data)}, timeout=0.6)

    running = threading.Thread(target=impatient, args=(0,))  # its call starts at once: it runs to the end
    queued = threading.Thread(target=impatient, args=(0.3,))  # waits behind it, then its client leaves
    running.start(), queued.start()
    running.join(), queued.join()
    time.sleep(2.5)  # the first call ends; the queued one would have run by now
    assert httpx.get(f"{server.url}/api/stats").json()["items"] - before == 1


def test_filter_patterns_whose_client_leaves_stop_at_the_next_step(server, monkeypatch):
    """The page asks for a layer's patterns whenever the layer changes; an ascent nobody waited for any
    more (seconds per layer here, minutes on InceptionV3) held the model thread, and the heatmaps of the
    layer finally chosen queued behind every one of them."""
    from xconv.cancel import stop_if_cancelled
    from xconv.web.service import ExplainService

    steps = []

    def slow_patterns(self, layer, count=16):
        for _ in range(150):  # 3 s in all
            stop_if_cancelled()
            steps.append(layer)
            time.sleep(0.02)
        return {"layer": layer, "png": b"", "filters": [], "robustness": []}

    monkeypatch.setattr(ExplainService, "filters", slow_patterns)
    with pytest.raises(httpx.TimeoutException):
        httpx.get(f"{server.url}/api/filters", params={"layer": "block2_pool"}, timeout=0.5)
    time.sleep(3.5)  # the whole ascent would have ended by now
    assert 0 < len(steps) < 100, len(steps)


def test_a_busy_port_is_one_line_before_the_url_is_printed(monkeypatch):
    import socket

    from xconv.web.server import listening_sockets

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(xconv.XconvError, match=rf"cannot serve on 127.0.0.1:{taken.getsockname()[1]}: "):
            listening_sockets("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()
    with pytest.raises(xconv.XconvError, match="cannot serve on nosuch.invalid:80"):
        listening_sockets("nosuch.invalid", 80)
    # "localhost" resolving to ::1 first, as on stock Debian: every address is served, on one port.
    resolve = socket.getaddrinfo
    both = [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 0, 0, 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0))]
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, **kw: both if host == "localhost" else
                        resolve(host, port, **kw))
    bound = listening_sockets("localhost", 0)
    try:
        assert {s.getsockname()[0] for s in bound} <= {"::1", "127.0.0.1"} and "127.0.0.1" in \
            {s.getsockname()[0] for s in bound}
        assert len({s.getsockname()[1] for s in bound}) == 1
    finally:
        for listening in bound:
            listening.close()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_serve_command_needs_a_token_off_loopback_and_stops_cleanly(stop, tmp_path):
    """Ctrl-C, and SIGTERM (docker stop, systemd), exit 0 and leave TensorFlow's temporary files removed:
    SIGTERM killed the process (143) before its exit handlers ran."""
    process = subprocess.Popen([sys.executable, "-m", "xconv.cli", "serve", "--host", "0.0.0.0", "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TMPDIR": str(tmp_path)}, cwd=REPO)
    try:
        line = process.stdout.readline()
        match = re.search(r"\?token=(\S+)", line)
        assert match, line
        port = int(re.search(r"0\.0\.0\.0:(\d+)/", line)[1])  # --port 0: the port actually bound
        assert port > 0
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/models", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.2)
        assert response.status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/api/models", params={"token": match[1]}).status_code == 200
        assert httpx.post(f"http://127.0.0.1:{port}/api/explain", data={"sample": "chelsea"},
                          params={"token": match[1]}, timeout=60).status_code == 200  # TensorFlow traced a step
        process.send_signal(stop)
        assert process.wait(timeout=30) == 0
        assert "Traceback" not in process.stdout.read()
        assert list(tmp_path.iterdir()) == []
    finally:
        if process.poll() is None:
            process.kill()


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmRSS")).split()[1]) / 1024


def test_fifty_concurrent_uploads_are_batched_and_answered_correctly(server, catsdogs, photos):
    good = [photos / "chelsea.jpg", photos / "crop.png"]
    expected = {path.name: cli_prediction(catsdogs, path) for path in good}
    payloads = [(p.name, p.read_bytes()) for p in good + [photos / "broken.jpg", photos / "text.png"]]

    async def one(client, index):
        name, data = payloads[index % len(payloads)]
        response = await client.post("/api/explain", files={"file": (name, data)}, data={"method": "gradcam"})
        return name, response.status_code, response.json()

    async def burst():
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            return await asyncio.gather(*(one(client, i) for i in range(50)))

    asyncio.run(burst())  # warm-up: every shape traced, caches filled
    before, calls_before = rss_mb(), httpx.get(f"{server.url}/api/stats").json()
    answers = asyncio.run(burst())
    for name, status, body in answers:
        if name in expected:
            label, score = expected[name]
            assert status == 200 and body["label"] == label and body["probability"] == pytest.approx(score, abs=1e-4)
        else:
            assert 400 <= status < 500 and name in body["error"]
    server_stats = httpx.get(f"{server.url}/api/stats").json()
    calls = server_stats["batches"] - calls_before["batches"]
    photos_answered = server_stats["items"] - calls_before["items"]
    assert photos_answered == 26 and calls < photos_answered  # 26 good uploads in fewer model calls
    assert server_stats["largest_batch"] > 1
    assert httpx.get(f"{server.url}/api/models").status_code == 200
    assert rss_mb() - before < 200, (before, rss_mb())


def test_full_size_decodes_are_bounded(server, photos, monkeypatch):
    """However many uploads arrive at once, at most DECODES_AT_ONCE are decoded at full size together."""
    import threading

    import xconv.web.app as web_app

    active, most, lock = [0], [0], threading.Lock()
    real = web_app.decode_bytes

    def slow_decode(*args):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.2)
        try:
            return real(*args)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(web_app, "decode_bytes", slow_decode)
    data = (photos / "chelsea.jpg").read_bytes()

    async def burst():
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            return await asyncio.gather(*(client.post("/api/predict", files={"file": ("c.jpg", data)})
                                          for _ in range(12)))

    assert all(response.status_code == 200 for response in asyncio.run(burst()))
    assert 1 < most[0] <= web_app.DECODES_AT_ONCE


def save_docs_screenshot(png, jpeg, width: int = 900) -> None:
    import cv2

    picture = cv2.imread(str(png))
    height = round(picture.shape[0] * width / picture.shape[1])
    cv2.imwrite(str(jpeg), cv2.resize(picture, (width, height), interpolation=cv2.INTER_AREA),
                [cv2.IMWRITE_JPEG_QUALITY, 80])


def test_page_in_chromium_explains_switches_and_reports_errors(server, catsdogs, photos):
    sync_api = pytest.importorskip("playwright.sync_api")
    label, score = cli_prediction(catsdogs, photos / "chelsea.jpg")
    with sync_api.sync_playwright() as playwright:
        browser = launch_browser(playwright)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(server.url)
        page.wait_for_selector("body[data-ready=true]")
        page.set_input_files("#file", str(photos / "chelsea.jpg"))
        page.wait_for_selector("body[data-state=done]", timeout=60_000)
        assert page.inner_text("#prediction") == f"{label} {score:.3f}"
        assert page.locator("#heatmaps img").count() == 2
        page.wait_for_selector("body[data-filters=done]", timeout=120_000)
        all_loaded = """() => Array.from(document.images).filter(i => !i.closest('[hidden]'))
                           .every(i => i.complete && i.naturalWidth > 0 && i.getBoundingClientRect().width > 0)"""
        assert page.evaluate(all_loaded)
        screenshot(page, "web-page")

        page.select_option("#method", "gradcam++")
        page.wait_for_function("document.getElementById('heatmap-caption').textContent.startsWith('gradcam++')")
        page.wait_for_selector("body[data-state=done]")
        page.select_option("#layer", "block2_pool")  # activations and filters; heatmaps stay at the default layer
        page.wait_for_function("document.getElementById('activation-layer').textContent === 'block2_pool'",
                               timeout=60_000)
        page.wait_for_function("document.getElementById('filters-layer').textContent === 'block2_pool'",
                               timeout=120_000)
        page.wait_for_selector("body[data-filters=done]")
        assert page.evaluate(all_loaded)
        shot = screenshot(page, "web-page-switched")
        if os.environ.get("XCONV_UPDATE_SCREENSHOTS"):  # the picture in README.md and docs/web.md
            save_docs_screenshot(shot, REPO / "docs" / "images" / "web-page.jpg")

        page.set_input_files("#file", str(photos / "broken.jpg"))
        page.wait_for_selector("body[data-state=error]", timeout=60_000)
        assert "broken.jpg: corrupt or truncated image" in page.inner_text("#error")
        assert page.is_hidden("#result")
        screenshot(page, "web-page-error")
        browser.close()


def test_report_is_self_contained_and_renders_in_chromium(catsdogs, photos, tmp_path):
    from xconv.report import build_report

    paths = [photos / "chelsea.jpg", photos / "crop.png", photos / "broken.jpg"]
    report = build_report(catsdogs, paths, tmp_path / "report.html", methods=["gradcam", "layercam"])
    text = report.path.read_text()
    assert report.photos == 2 and [e.path for e in report.errors] == [str(photos / "broken.jpg")]
    assert not re.search(r'(src|href)="(?!data:)', text)  # every picture inline, nothing fetched
    assert report.path.stat().st_size < 1.5e6  # two photos; ten stay a few MB
    assert str(photos) not in text  # bad files by name: the report is handed to others
    label, score = cli_prediction(catsdogs, photos / "chelsea.jpg")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = launch_browser(playwright)
        for name, viewport in (("report", {"width": 1100, "height": 900}), ("report-phone", {"width": 390, "height": 844})):
            page = browser.new_page(viewport=viewport)
            page.route("**/*", lambda route: route.abort() if not route.request.url.startswith(("file:", "data:"))
                       else route.continue_())  # offline: any outside request would fail the page
            page.goto(report.path.as_uri())
            assert page.locator(".prediction").first.inner_text().startswith(f"{label} {score:.3f}")
            images = page.locator("img")
            assert images.count() == 2 * (1 + 2 * 2 + 2) + 1  # photo, 2 methods x 2 classes, 2 grids; filters
            assert page.evaluate("() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
            assert page.evaluate("() => document.documentElement.scrollWidth") <= viewport["width"] + 1
            assert "broken.jpg: corrupt or truncated image" in page.inner_text(".xconv-error")
            screenshot(page, name)
        browser.close()


def test_chunked_uploads_and_malformed_fields_get_a_4xx_line(server, photos):
    def body():
        yield (photos / "chelsea.jpg").read_bytes()

    response = httpx.post(f"{server.url}/api/predict", content=body(),
                          headers={"content-type": "multipart/form-data; boundary=x"})
    assert response.status_code == 411 and "Content-Length" in response.json()["error"]
    response = post(f"{server.url}/api/explain", photos / "chelsea.jpg", grid="maybe")
    assert response.status_code == 422 and response.json()["error"].startswith("invalid request: grid")
    response = httpx.post(f"{server.url}/api/predict", files={"file": (None, "hello")})  # curl -F file=hello
    assert response.status_code == 400 and response.json()["error"].startswith("send the photo as a file in the 'file'")
    # FastAPI's own answers come in the API's one shape too (they were {"detail": ...}).
    response = httpx.post(f"{server.url}/api/predict", content=b"garbage",
                          headers={"content-type": "multipart/form-data; boundary=x"})
    assert response.status_code == 400 and response.json() == {"error": "Invalid multipart data."}
    response = httpx.get(f"{server.url}/api/nothing-here")
    assert response.status_code == 404 and response.json() == {"error": "Not Found"}


def test_report_refuses_no_methods_or_no_photos_before_any_work(catsdogs, photos, tmp_path):
    from xconv.report import build_report

    with pytest.raises(xconv.XconvError, match="--method needs"):
        build_report(catsdogs, [photos / "chelsea.jpg"], tmp_path / "r.html", methods=[])
    with pytest.raises(xconv.XconvError, match="no input images"):
        build_report(catsdogs, [], tmp_path / "r.html")
    with pytest.raises(xconv.XconvError, match="every report already has activation grids"):  # it named web API fields
        build_report(catsdogs, [photos / "chelsea.jpg"], tmp_path / "r.html", methods=["activations"])
    with pytest.raises(xconv.XconvError, match="unknown layer 'block9_pool'"):
        build_report(catsdogs, [photos / "chelsea.jpg"], tmp_path / "r.html", filter_layer="block9_pool")
    with pytest.raises(xconv.XconvError, match="not a conv or pooling layer"):
        build_report(catsdogs, [photos / "chelsea.jpg"], tmp_path / "r.html", filter_layer="predictions")
    assert not (tmp_path / "r.html").exists()


def test_a_file_name_that_is_not_utf8_is_shown_not_fatal(catsdogs, photos, tmp_path):
    """The report was 'internal error: UnicodeEncodeError' with no file: only explain and predict coped."""
    import os
    import shutil

    from xconv.report import build_report

    odd = tmp_path / os.fsdecode(b"bad\xff.png")
    shutil.copy(photos / "crop.png", odd)
    report = build_report(catsdogs, [odd], tmp_path / "odd.html", methods=["gradcam"], activation_layers=0)
    assert report.photos == 1 and "bad?.png" in report.path.read_text(encoding="utf-8")


def test_report_of_only_unreadable_files_keeps_the_earlier_report(photos, tmp_path):
    from typer.testing import CliRunner

    from xconv.cli import build_app

    earlier = tmp_path / "report.html"
    earlier.write_text("<!doctype html><html><head><title>xconv report: catsdogs</title></head><p>yesterday's report</p>")
    runner, app = CliRunner(), build_app()
    notes = tmp_path / "notes.html"  # the user's own page: it was replaced without a word
    notes.write_text("<html>my own notes</html>")
    result = runner.invoke(app, ["report", str(photos / "chelsea.jpg"), "--out", str(notes)])
    assert result.exit_code == 1 and "exists and is not an xconv report" in result.output, result.output
    assert notes.read_text() == "<html>my own notes</html>"
    result = runner.invoke(app, ["report", str(photos / "broken.jpg"), str(photos / "text.png"), "--out", str(earlier)])
    assert result.exit_code == 1 and f"{earlier} was not written" in result.output, result.output
    assert "broken.jpg" in result.output and "text.png" in result.output
    assert earlier.read_text().endswith("<p>yesterday's report</p>")
    folder = tmp_path / "folder.html"
    folder.mkdir()
    result = runner.invoke(app, ["report", str(photos / "chelsea.jpg"), "--out", str(folder)])
    assert result.exit_code == 1 and "is a folder" in result.output, result.output


def test_report_reads_methods_and_options_as_explain_does(catsdogs, photos, tmp_path, monkeypatch):
    """``--method`` was split by hand ('all' refused after the model loaded) and ``-O`` reached the model
    only (``-O score=logit`` refused); now both are read as ``xconv explain`` and ``xconv score`` read them,
    and the options reach every explanation of the report."""
    import types

    from typer.testing import CliRunner

    import xconv.report
    from xconv.cli import build_app
    from xconv.web.service import ExplainKey, ExplainService

    asked = []
    monkeypatch.setattr(xconv.report, "build_report", lambda model, paths, out, methods, **kwargs: asked.append(
        (methods, kwargs["method_options"])) or types.SimpleNamespace(errors=[], photos=1, path=photos / "crop.png"))
    runner, app = CliRunner(), build_app()
    result = runner.invoke(app, ["report", str(photos / "chelsea.jpg"), "--method", "all", "--out",
                                 str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    heatmap_methods = [m["name"] for m in xconv.web.service.installed_heatmap_methods()]
    assert asked[-1][0] == heatmap_methods and "gradcam" in heatmap_methods and "filters" not in heatmap_methods
    result = runner.invoke(app, ["report", str(photos / "chelsea.jpg"), "--method", "gradcam,layercam",
                                 "-O", "gradcam.score=logit", "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert asked[-1] == (["gradcam", "layercam"], {"gradcam": {"score": "logit"}, "layercam": {}})

    real_explain, seen = xconv.explain, []
    monkeypatch.setattr(xconv, "explain", lambda *args, **kwargs: seen.append(kwargs.get("score")) or
                        real_explain(*args, **kwargs))
    service = ExplainService(catsdogs, method_options={"gradcam": {"score": "logit"}})
    service.explain(service.check(ExplainKey("gradcam")), [service.upload(chelsea())])
    assert seen == ["logit", "logit"]  # the predicted class's map and the other class's
