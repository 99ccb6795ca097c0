"""Deciding a request: choosing the version, checking the facts, running the engine, explaining,
counterfactuals and replaying logged decisions. Used by `service` and `rules.authoring`."""
