"""The web console for reviewers and policy teams: server-rendered pages over the gRPC service.

It holds no engine of its own (an import-linter contract keeps `rules` and `service` out of it): every
page is made from what the service returns to the signed-in user's credentials, so the service's
authorisation decides what each user may see. Layout:

- `config`: how it was started (where the service is, who may sign in, TLS);
- `client`: the gRPC calls, with the user's bearer token, and their errors as `ServiceError`;
- `security`: sign-in, CSRF, security headers, no caching, the access log (never facts or queries);
- `pages/`: one module per part of the console (policies, try a case, decisions, impact);
- `templates/`: Jinja2 pages in the GOV.UK Design System's patterns; its CSS, fonts and images are
  served from the `govuk-frontend` npm package installed at set-up (package.json), never copied in.
"""
