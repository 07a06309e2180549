"""The built-in web UI (SPEC §12): a page shell and static ES modules on the HTTP port.

The shell and assets are public (they hold no data); every number on the page comes from the
query API with the caller's key. Every answer carries a Content-Security-Policy that allows
scripts, styles and connections to this server only: no inline script, no other host.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
MEDIA = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


def assets(root: Path = STATIC) -> dict[str, Path]:
    """URL name (``pages/logs.js``) -> file, for every servable file under ``root``.

    Listed once at start: a request can only name one of these, never a path of its own."""
    return {
        p.relative_to(root).as_posix(): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in MEDIA
    }


def file_response(path: Path) -> web.Response:
    return web.Response(
        body=path.read_bytes(),
        content_type=MEDIA[path.suffix],
        charset="utf-8" if path.suffix != ".png" else None,
        headers=SECURITY_HEADERS,
    )


class WebUi:
    def __init__(self, root: Path = STATIC) -> None:
        self.files = assets(root)
        self.index = root / "index.html"

    def register(self, app: web.Application) -> None:
        app.router.add_get("/", self.page)
        app.router.add_get("/ui/{name:.+}", self.asset)

    async def page(self, _request: web.Request) -> web.Response:
        return file_response(self.index)

    async def asset(self, request: web.Request) -> web.Response:
        path = self.files.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound(text="not found", headers=SECURITY_HEADERS)
        return file_response(path)
