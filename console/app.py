"""The console as a Starlette application: its routes (one module of `pages/` each), templates,
static files (GOV.UK Frontend's from its npm package) and error pages."""
from __future__ import annotations

import html
import secrets
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from . import formatting
from .client import ServiceClient, ServiceError
from .config import Config
from .pages import decisions, home, impact, policies, signin, try_case
from .render import error_page
from .security import NotSignedIn, Protections, csrf_token

HERE = Path(__file__).resolve().parent
PAGES = (home, signin, policies, try_case, decisions, impact)


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["csrf_token"] = csrf_token
    templates.env.autoescape = True  # every page: facts and texts are the service's and the user's, never markup
    templates.env.filters.update(formatting.FILTERS)
    for page in PAGES:
        filters = getattr(page, "filters", {})
        if clash := set(filters) & set(templates.env.filters):  # one page's filter would replace another's
            raise RuntimeError(f"{page.__name__} redefines the Jinja filters {sorted(clash)}")
        templates.env.filters.update(filters)
    return templates


def create_app(config: Config, client: ServiceClient | None = None) -> Starlette:
    """The console, calling the service at `config.service` (or through `client`)."""
    config.check()
    routes = [*(route for page in PAGES for route in page.routes),
              Mount("/assets", StaticFiles(directory=config.assets / "assets"), name="assets"),
              Mount("/govuk", StaticFiles(directory=config.assets), name="govuk"),
              Mount("/static", StaticFiles(directory=HERE / "static"), name="static")]
    middleware = [
        Middleware(Protections),
        Middleware(SessionMiddleware, secret_key=(config.session_secret or secrets.token_bytes(32)).hex(),
                   session_cookie="__Host-console" if config.secure else "console_session",
                   same_site="strict", https_only=config.secure, max_age=8 * 3600),
    ]
    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={ServiceError: _service_error, NotSignedIn: _sign_in,
                                        HTTPException: _http_error})
    app.state.config = config
    app.state.client = client or ServiceClient(config)
    app.state.templates = _templates()
    return app


async def _service_error(request: Request, error: Exception):
    assert isinstance(error, ServiceError)
    if error.http_status == 401 and request.app.state.config.require_sign_in:
        request.session.pop("token", None)
        return RedirectResponse("/sign-in", status_code=303)
    return error_page(request, error.http_status, error.message)


async def _sign_in(request: Request, error: Exception):
    return RedirectResponse("/sign-in", status_code=303)


async def _http_error(request: Request, error: Exception):
    assert isinstance(error, HTTPException)
    return error_page(request, error.status_code, html.unescape(error.detail or ""))
