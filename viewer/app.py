"""The viewer's ASGI app (Starlette): the page, its static files, and the JSON API."""
from __future__ import annotations

from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vexplain.core.errors import ImageLoadError, InvalidInput, VexplainError, one_line

from . import handlers
from .security import LocalOnly, allowed_hosts_for
from .uploads import BodyLimit, Limits, UploadTooLarge, decode_upload

STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
#: most form fields a request may have (the image, method, target, overlay settings, options)
MAX_FIELDS = 64


def static_files() -> dict[str, tuple[bytes, str]]:
    """name → (bytes, media type) of every file in the package's ``static`` folder, read once:
    the only files the server ever sends, looked up by exact name (no path reaches the disk)."""
    folder = resources.files("vexplain.viewer") / "static"
    found = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if entry.is_file() and suffix in STATIC_TYPES:
            found[entry.name] = (entry.read_bytes(), STATIC_TYPES[suffix])
    return found


def create_app(model: handlers.ViewerModel, limits: Limits | None = None, bind_host: str = "127.0.0.1") -> Starlette:
    """The viewer for ``model``: uploads within ``limits`` (default ``Limits()``); answers only the
    host names that ``bind_host`` stands for (loopback names for a loopback address)."""
    limits = limits or Limits()
    files = static_files()
    methods_cache: list[dict[str, Any]] = []

    async def page(request: Request) -> Response:
        body, media = files["index.html"]
        return Response(body, media_type=media)

    async def static(request: Request) -> Response:
        found = files.get(request.path_params["name"])
        if found is None:
            raise HTTPException(404, "no such file")
        return Response(found[0], media_type=found[1])

    async def api_model(request: Request) -> Response:
        return JSONResponse(handlers.model_info(model, limits))

    async def api_methods(request: Request) -> Response:
        if not methods_cache:
            methods_cache.extend(await run_in_threadpool(handlers.method_list, model))
        return JSONResponse(methods_cache)

    async def api_colormaps(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(handlers.colormaps))

    async def api_explain(request: Request) -> Response:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise InvalidInput(f"POST /api/explain takes a multipart/form-data body with an '{handlers.IMAGE_FIELD}' file and a 'method' field")
        async with request.form(max_files=1, max_fields=MAX_FIELDS) as form:
            upload = form.get(handlers.IMAGE_FIELD)
            if not isinstance(upload, UploadFile):
                raise ImageLoadError(f"the form needs an '{handlers.IMAGE_FIELD}' field with the image file")
            data = await upload.read(limits.max_bytes + 1)
            filename = upload.filename
            fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        image = decode_upload(data, filename, limits)
        method, target, options, colormap, alpha = handlers.parse_fields(fields, model.class_names)
        parsed = handlers.ExplainRequest(image, filename or "image", method, target, options, colormap, alpha)
        return JSONResponse(await run_in_threadpool(handlers.run_explain, model, parsed))

    routes = [
        Route("/", page),
        Route("/static/{name}", static),
        Route("/api/model", api_model),
        Route("/api/methods", api_methods),
        Route("/api/colormaps", api_colormaps),
        Route("/api/explain", api_explain, methods=["POST"]),
    ]
    middleware = [Middleware(LocalOnly, allowed_hosts=allowed_hosts_for(bind_host)), Middleware(BodyLimit, limits=limits)]
    handlers_by_error = {HTTPException: _http_error, UploadTooLarge: _too_large, VexplainError: _bad_request, Exception: _internal_error}
    return Starlette(routes=routes, middleware=middleware, exception_handlers=handlers_by_error)


def _error(status: int, message: str, kind: str | None = None) -> JSONResponse:
    body = {"error": " ".join(message.split())}
    if kind:
        body["type"] = kind
    return JSONResponse(body, status_code=status)


async def _http_error(request: Request, error: HTTPException) -> Response:
    if error.status_code == 400 and "multipart" in str(error.detail).lower():
        return _error(400, f"the body must be a multipart form with an '{handlers.IMAGE_FIELD}' file and a 'method' field ({error.detail})")
    return _error(error.status_code, str(error.detail))


async def _too_large(request: Request, error: UploadTooLarge) -> Response:
    return _error(413, one_line(error, typed=False), type(error).__name__)


async def _bad_request(request: Request, error: VexplainError) -> Response:
    return _error(400, one_line(error, typed=False), type(error).__name__)


async def _internal_error(request: Request, error: Exception) -> Response:
    # Starlette re-raises the error after this answer, so the server's log keeps the traceback
    first = str(error).splitlines()[0] if str(error) else ""
    return _error(500, f"internal error: {type(error).__name__}: {first} (the server's log has the traceback)", "InternalError")
