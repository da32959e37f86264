"""/docs (Swagger UI) and /redoc served with their scripts and styles from an installed
package (fastapi-offline's copies), not a CDN: the pages work on a machine with no internet,
and a page of Tamma's loads nothing from anyone else."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).parent / "static"
PREFIX = "/docs-assets"
#: the pages load only from this server (ReDoc would fetch its logo from cdn.redoc.ly); their
#: bootstrap scripts are inline, and ReDoc's search runs in a worker made from a blob
POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'"
)


def install(app: FastAPI) -> None:
    """Call with FastAPI(docs_url=None, redoc_url=None): these replace FastAPI's own pages."""
    app.mount(PREFIX, StaticFiles(directory=ASSETS), name="docs-assets")
    openapi = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return _confined(
            get_swagger_ui_html(
                openapi_url=openapi,
                title=f"{app.title} API",
                swagger_js_url=f"{PREFIX}/swagger-ui-bundle.js",
                swagger_css_url=f"{PREFIX}/swagger-ui.css",
                swagger_favicon_url=f"{PREFIX}/favicon.png",
                swagger_ui_parameters={"persistAuthorization": False},
            )
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return _confined(
            get_redoc_html(
                openapi_url=openapi,
                title=f"{app.title} API",
                redoc_js_url=f"{PREFIX}/redoc.standalone.js",
                redoc_favicon_url=f"{PREFIX}/favicon.png",
                with_google_fonts=False,
            )
        )


def _confined(page: HTMLResponse) -> HTMLResponse:
    page.headers["content-security-policy"] = POLICY
    return page
