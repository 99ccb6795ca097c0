"""Sign-in and sign-out, when the console asks users to sign in (`--sign-in`).

A user signs in with a bearer token of the service's authz file; the token is kept in the signed
session cookie and sent with each of their calls. The console checks it the only way that counts:
by asking the service (ListPolicies), which refuses a token it does not know.
"""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse
from starlette.routing import Route

from ..client import ServiceError
from ..render import render
from ..security import checked_form


async def sign_in(request):
    if not request.app.state.config.require_sign_in:
        return RedirectResponse("/", status_code=303)
    if request.method == "GET":
        return render(request, "signin.html", section="")
    form = await checked_form(request)
    value = str(form.get("token", "")).strip()
    problem = "Enter your access token" if not value else None
    if value:
        try:
            await run_in_threadpool(request.app.state.client.list_policies, value)
        except ServiceError as error:
            if error.http_status != 401:
                raise
            problem = "The decision service does not know this access token"
    if problem:
        return render(request, "signin.html", status_code=400, section="", problem=problem,
                      error_summary=[("token", problem)])
    request.session.clear()  # a new session for the signed-in user: a new CSRF token too
    request.session["token"] = value
    return RedirectResponse("/", status_code=303)


async def sign_out(request):
    await checked_form(request)
    request.session.clear()
    return RedirectResponse("/sign-in", status_code=303)


routes = [Route("/sign-in", sign_in, methods=["GET", "POST"]), Route("/sign-out", sign_out, methods=["POST"])]
