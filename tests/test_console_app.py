"""The console's frame: it starts only where it is safe, every page carries the security headers and
no-store, forms need their CSRF token, and the access log holds no query or fact."""
from __future__ import annotations

import json
import logging

import pytest

from console.app import create_app
from console.config import Config, ConfigError
from tests.consoletools import console_client, csrf, grpc_target


@pytest.mark.parametrize(("settings", "refusal"), [
    ({"host": "0.0.0.0"}, "needs --tls-cert"),
    ({"host": "10.0.0.5", "tls_cert": "c.pem", "tls_key": "k.pem"}, "must sign in"),
    ({"tls_cert": "c.pem"}, "go together"),
    ({"require_sign_in": True, "dev_token": "t"}, "do not go together"),
])
def test_an_unsafe_start_is_refused(settings, refusal):
    from pathlib import Path
    settings = {k: Path(v) if k.startswith("tls") else v for k, v in settings.items()}
    with pytest.raises(ConfigError, match=refusal):
        create_app(Config(**settings))


def test_the_start_page_lists_what_the_service_serves(console):
    page = console.get("/")
    assert page.status_code == 200
    assert "6 policies served" in page.text


def test_every_page_has_the_security_headers_and_is_never_cached(console):
    for path in ("/", "/nowhere"):
        page = console.get(path)
        assert page.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert "'unsafe-inline'" not in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "same-origin"
    assert "no-store" not in console.get("/govuk/govuk-frontend.min.css").headers.get("cache-control", "")


def test_govuk_frontend_comes_from_its_npm_package(console):
    css = console.get("/govuk/govuk-frontend.min.css")
    assert css.status_code == 200 and "govuk-" in css.text
    font = css.text.split("/assets/fonts/", 1)[1].split(")", 1)[0].strip("\"'")
    assert console.get(f"/assets/fonts/{font}").status_code == 200


def test_a_post_without_its_csrf_token_is_refused(console_service, console_reports):
    with console_client(grpc_target(console_service[0]), console_reports, require_sign_in=True) as client:
        assert client.get("/sign-in").status_code == 200
        refused = client.post("/sign-in", data={"token": "x"})
        assert refused.status_code == 403
        token = csrf(client.get("/sign-in").text)
        other_site = client.post("/sign-in", data={"token": "x", "csrf_token": token},
                                 headers={"origin": "https://evil.example"})
        assert other_site.status_code == 403


def test_without_sign_in_a_page_sends_you_to_sign_in(console_service, console_reports):
    with console_client(grpc_target(console_service[0]), console_reports, require_sign_in=True) as client:
        page = client.get("/")
        assert page.status_code == 303 and page.headers["location"] == "/sign-in"


def test_the_access_log_has_the_path_never_the_query(console, caplog):
    with caplog.at_level(logging.INFO, logger="cms_policy.console.access"):
        console.get("/?secret_fact=abuse")
    [record] = [r for r in caplog.records if r.name == "cms_policy.console.access"]
    line = json.dumps(record.fields)
    assert record.fields["path"] == "/" and "secret_fact" not in line and "abuse" not in line


def test_a_page_that_fails_is_a_500_page_logged_without_its_message(console, monkeypatch, caplog):
    def broken(*_):
        raise ValueError("invalid date 2023-02-17 for evidence_items[0]")  # a message quoting a fact
    monkeypatch.setattr(console.app.state.client, "list_policies", broken)
    with caplog.at_level(logging.DEBUG):
        page = console.get("/")
    assert page.status_code == 500 and "could not show this page" in page.text and "2023-02-17" not in page.text
    assert page.headers["cache-control"] == "no-store"
    [failed] = [r for r in caplog.records if r.getMessage() == "page failed"]
    assert failed.fields == {"method": "GET", "path": "/", "error": "ValueError"}
    assert not [r for r in caplog.records if "2023-02-17" in r.getMessage() or r.exc_info]
