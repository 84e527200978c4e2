"""The ASGI application of ``xconv serve``: JSON API, static page, limits and access token.

Every error a user can cause (a broken upload, an unknown method, layer or sample) is a 4xx with the
same one line the CLI prints, as ``{"error": "..."}``. Uploads are read into memory with a size cap and
decoded with a pixel cap (decompression bombs refused); nothing a client sends becomes a path on the
server; the pictures come back inline as base64 PNG data URLs, so nothing is stored between requests.
"""

import asyncio
import base64
import secrets
import sys
from contextlib import asynccontextmanager
from importlib import resources
from typing import Optional

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from xconv.errors import UnknownNameError, XconvError, first_line
from xconv.images import ImageTooLargeError, decode_bytes
from xconv.web.batching import MicroBatcher
from xconv.web.server import is_loopback
from xconv.web.service import SAMPLES, ExplainKey, ExplainService, sample_photo

#: Default upload limits: bytes per file, and decoded pixels (a 24-megapixel photo passes).
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000

TOKEN_COOKIE = "xconv_token"


def token_cookie(request: Request) -> str:
    """The token cookie's name for the port the browser talks to: browsers send a cookie to every port of
    its host, so one name would hand this server's token to any other service there (and two xconv
    servers on one host would overwrite each other's), as Jupyter's per-port cookie names avoid."""
    return f"{TOKEN_COOKIE}_{request.url.port or (443 if request.url.scheme == 'https' else 80)}"


#: Uploads decoded at full size at the same time (the others wait; see ``create_app``).
DECODES_AT_ONCE = 4

#: nginx's status for a request whose client closed the connection first; no client reads it.
CLIENT_CLOSED_REQUEST = 499


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def with_data_urls(value):
    """PNG bytes anywhere in a result -> data URLs, for JSON."""
    if isinstance(value, bytes):
        return data_url(value)
    if isinstance(value, dict):
        return {key: with_data_urls(item) for key, item in value.items()}
    if isinstance(value, list):
        return [with_data_urls(item) for item in value]
    return value


def request_host(value: str) -> str:
    """The host name of a Host header or of an Origin's authority, without port or IPv6 brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        port = value[end + 1:]
        # Only "[addr]" or "[addr]:port" names an IPv6 host; "[::1]evil.example" is no address at all.
        return value[1:end] if end > 0 and (not port or (port[0] == ":" and port[1:].isdigit())) else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def cross_site(request: Request) -> bool:
    """A browser request sent by a page of another origin (its Origin names another host and port)."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return bool(origin)
    return origin.split("://", 1)[-1].lower() != request.headers.get("host", "").lower()


def fetched_by_another_origin(request: Request) -> bool:
    """A browser fetch that another origin's page started (even an ``<img>`` on it, which sends no Origin):
    its Sec-Fetch-Site says so. Scripts send no such header; a URL typed or bookmarked sends ``none``."""
    return request.headers.get("sec-fetch-site", "none").lower() not in ("same-origin", "none")


def create_app(service: ExplainService, token: str | None = None, max_batch: int = 16,
               max_upload_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_UPLOAD_PIXELS,
               local_only: bool = False):
    """The FastAPI app over one loaded model. ``token``: required on every request when set (header
    ``Authorization: Bearer``, ``X-Xconv-Token``, ``?token=`` which also sets a cookie for the page).
    ``local_only`` (a loopback server without a token): requests must name a loopback host, so a web page
    elsewhere cannot reach the server through DNS rebinding. Without a token, uploads from another origin's
    pages are refused too (a form posted across sites needs no permission from the browser)."""
    batcher = MicroBatcher(lambda key, uploads: run_batch(service, key, uploads), max_batch=max_batch)
    # Full-size decodes at once: a 40-megapixel RGBA upload passes through several full-size copies (about
    # 1 GB), so many at a time could exhaust memory; the rest wait their turn.
    decoding = asyncio.Semaphore(DECODES_AT_ONCE)

    @asynccontextmanager
    async def lifespan(app):
        yield
        batcher.close()

    app = FastAPI(title="xconv", version="1", docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="See how a convolutional network sees an image: predictions, heatmaps, "
                              "activations and filter patterns of the loaded model.")
    app.state.service, app.state.batcher = service, batcher
    static = resources.files("xconv.web") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    try:
        from swagger_ui_bundle import swagger_ui_path

        app.mount("/swagger-ui", StaticFiles(directory=swagger_ui_path), name="swagger")
        swagger_assets = True
    except ImportError:  # the API docs page then needs the network; the app itself does not
        swagger_assets = False

    @app.exception_handler(XconvError)
    async def user_error(request, error: XconvError):
        # By type, not by text: an ImageError's message starts with the client's own file name.
        unknown_sample = isinstance(error, UnknownNameError) and error.kind == "sample"
        status = 413 if isinstance(error, ImageTooLargeError) else 404 if unknown_sample else 400
        # Whole: the CLI prints the whole line, and an unknown name's line lists every valid one.
        return JSONResponse({"error": first_line(error, limit=4000)}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, error: StarletteHTTPException):
        # FastAPI's own answers (an unknown route, a multipart body it cannot parse) in the API's one shape.
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_field(request, error: RequestValidationError):
        if any(tuple(e.get("loc", ())[-1:]) == ("file",) for e in error.errors()):
            # FastAPI's words were "file: Value error, Expected UploadFile, received: <class 'str'>".
            return JSONResponse({"error": "send the photo as a file in the 'file' field (multipart/form-data "
                                          "with a file name, as curl -F file=@photo.jpg does), not as text"},
                                status_code=400)
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', [])[1:])}: {e.get('msg')}" for e in error.errors())
        return JSONResponse({"error": f"invalid request: {problems}"}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request, error: Exception):
        # A bug, not a user mistake: one line in the server's log; the client learns no library paths.
        print(f"xconv serve: internal error on {request.url.path}: {first_line(error)}", file=sys.stderr)
        return JSONResponse({"error": "internal error (the server's log has the details)"}, status_code=500)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if local_only and not is_loopback(request_host(request.headers.get("host", ""))):
            return JSONResponse({"error": "this xconv server answers only requests for localhost or a loopback "
                                          "address (behind a proxy, run xconv serve with --token)"}, status_code=403)
        if token is None and request.method == "POST" and cross_site(request):
            # With a token, the SameSite cookie already keeps other sites' forms out (and a proxy may rewrite Host).
            return JSONResponse({"error": "uploads from another site's page are refused"}, status_code=403)
        if request.url.path.startswith("/api/") and fetched_by_another_origin(request):
            # An <img src> on any page could otherwise start minutes of filter-pattern ascent here; with a
            # token too: a page on another port of this host is "same-site", so the cookie goes with it.
            return JSONResponse({"error": "API calls from another site's page are refused"}, status_code=403)
        if token is not None:
            offered = (request.headers.get("x-xconv-token") or request.query_params.get("token")
                       or request.cookies.get(token_cookie(request)) or "")
            bearer = request.headers.get("authorization", "")
            if bearer.lower().startswith("bearer "):
                offered = bearer[7:]
            if not secrets.compare_digest(offered.encode(), token.encode()):
                return JSONResponse({"error": "access token required: open the URL xconv serve printed "
                                              "(it ends in ?token=...)"}, status_code=401)
        length = request.headers.get("content-length")
        if request.method == "POST" and not (length and length.isdigit()):
            # A chunked body would be spooled whole before any handler could count it.
            return JSONResponse({"error": "send uploads with a Content-Length"}, status_code=411)
        if length and length.isdigit() and int(length) > max_upload_bytes + 64 * 1024:
            return JSONResponse({"error": f"upload too large (over {max_upload_bytes // (1024 * 1024)} MB)"},
                                status_code=413)
        response = await call_next(request)
        if token is not None and request.query_params.get("token"):
            response.set_cookie(token_cookie(request), token, httponly=True, samesite="strict")
        return response

    async def read_upload(request: Request, file: Optional[UploadFile], sample: Optional[str]):
        """Decode an upload (or look up a sample) off the event loop, with size and pixel caps."""
        if file is None and not sample:
            raise XconvError("send a photo as 'file', or name a sample")
        if file is not None and sample:
            raise XconvError("send a photo as 'file' or name a sample, not both")
        files = len((await request.form()).getlist("file"))  # parsed already: FastAPI keeps the last
        if files > 1:
            raise XconvError(f"send one photo per request ({files} 'file' fields came)")
        if file is None:
            photo = await asyncio.to_thread(sample_photo, sample)
            return await asyncio.to_thread(service.upload, photo, sample)  # resizing is work: off the loop
        name = (file.filename or "upload").replace("/", "_")[-80:]
        # Read inside the bound too: until then the upload waits in the parser's spooled file, on disk past
        # 1 MB, so a thousand connections waiting here do not hold a thousand uploads in memory.
        async with decoding:
            try:
                data = await file.read(max_upload_bytes + 1)
            finally:
                await file.close()
            if len(data) > max_upload_bytes:
                raise ImageTooLargeError(name, f"upload too large (over {max_upload_bytes // (1024 * 1024)} MB)")
            photo = await asyncio.to_thread(decode_bytes, data, name, max_pixels)
            return await asyncio.to_thread(service.upload, photo, name)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(str(static / "index.html"), media_type="text/html")

    if swagger_assets:
        @app.get("/docs", include_in_schema=False)
        async def api_docs():
            return get_swagger_ui_html(openapi_url="/openapi.json", title="xconv API",
                                       swagger_js_url="/swagger-ui/swagger-ui-bundle.js",
                                       swagger_css_url="/swagger-ui/swagger-ui.css",
                                       swagger_favicon_url="/swagger-ui/favicon-32x32.png")
    else:
        @app.get("/docs", include_in_schema=False)
        async def api_docs():
            return get_swagger_ui_html(openapi_url="/openapi.json", title="xconv API")

    @app.get("/api/models", summary="The loaded model: name, classes, input size, layers")
    async def models():
        return [service.describe()]

    @app.get("/api/methods", summary="Installed heatmap methods, plugins included")
    async def methods():
        return service.methods

    @app.get("/api/samples", summary="Names of the sample photos shipped with xconv")
    async def samples():
        return list(SAMPLES)

    @app.get("/api/samples/{name}", summary="A sample photo as PNG", response_class=Response)
    async def sample(name: str):
        from xconv.png import encode_rgb_png

        photo = await asyncio.to_thread(sample_photo, name)
        return Response(await asyncio.to_thread(encode_rgb_png, photo), media_type="image/png")

    @app.post("/api/predict", summary="Every class's probability for one photo")
    async def predict(request: Request, file: Optional[UploadFile] = File(None), sample: Optional[str] = Form(None)):
        upload = await read_upload(request, file, sample)
        result = await while_connected(request, batcher.submit(("predict",), upload))
        return result if isinstance(result, Response) else {"model": service.model.display_name, **result}

    @app.post("/api/explain", summary="Prediction, a heatmap overlay per class, optionally an activation grid")
    async def explain(request: Request, file: Optional[UploadFile] = File(None), sample: Optional[str] = Form(None),
                      method: str = Form("gradcam"), layer: Optional[str] = Form(None),
                      activations: Optional[str] = Form(None), grid: bool = Form(False),
                      classes: str = Form("all")):
        if classes not in ("all", "predicted"):
            raise XconvError("classes must be 'all' or 'predicted'")
        key = service.check(ExplainKey(method, layer or None, activations or None, grid, classes == "all"))
        upload = await read_upload(request, file, sample)
        result = await while_connected(request, batcher.submit(key, upload))
        if isinstance(result, Response):
            return result
        return with_data_urls({"model": service.model.display_name, "name": upload.name, **result})

    @app.get("/api/filters", summary="Filter patterns of a layer (computed once per layer, then cached)")
    async def filters(request: Request, layer: Optional[str] = None):
        # A layer seen before is answered at once, not queued behind a heatmap or another layer's ascent.
        result = service.cached_filters(layer) or await while_connected(request, batcher.call(service.filters, layer))
        return result if isinstance(result, Response) else with_data_urls(result)

    @app.get("/api/stats", summary="Model calls made and photos they carried (micro-batching at work)")
    async def stats():
        return vars(service.stats)

    return app


async def while_connected(request: Request, work):
    """``work``'s result; a client that hangs up first cancels it, so its queued model call is dropped
    (a page that moved on, a script that timed out) instead of delaying every answer after it."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(disconnected(request))
    await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        gone.cancel()
        return task.result()
    task.cancel()
    return Response(status_code=CLIENT_CLOSED_REQUEST)


async def disconnected(request: Request) -> None:
    """Returns when the client has closed the connection (the body is read: nothing else can arrive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def run_batch(service: ExplainService, key, uploads):
    """The worker-thread side of the batcher: one model call for every queued upload with this key."""
    if key == ("predict",):
        return service.predict(uploads)
    return service.explain(key, uploads)
