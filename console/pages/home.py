"""The start page: what the console is for, and the way to each part."""
from __future__ import annotations

from starlette.routing import Route

from ..render import render
from ..security import token


def start(request):
    policies = request.app.state.client.list_policies(token(request))
    return render(request, "home.html", section="home", policies=policies.policies,
                  bundle_hash=policies.bundle_hash)


routes = [Route("/", start)]
