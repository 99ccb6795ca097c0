"""Rendering a page, and the error page every failure ends in."""
from __future__ import annotations

from starlette.requests import Request

ERROR_TITLES = {400: "There is a problem with the request", 401: "Sign in to continue",
                403: "You do not have permission to see this", 404: "Page not found",
                409: "This cannot be done now", 429: "Too much at once", 503: "The decision service is not available",
                504: "The decision service took too long"}


def render(request: Request, template: str, status_code: int = 200, **context):
    """A page: `template` with `context` (`section` marks the navigation's current part)."""
    return request.app.state.templates.TemplateResponse(
        request, template, {"signed_in_mode": request.app.state.config.require_sign_in, **context},
        status_code=status_code)


def error_page(request: Request, status: int, detail: str):
    return render(request, "error.html", status_code=status, status=status,
                  heading=ERROR_TITLES.get(status, "Something went wrong"), detail=detail)
