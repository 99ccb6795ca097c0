"""The engine: loading a policy bundle, compiling each version into a durable_rules ruleset
(`durable_host` is the one module that imports durable_rules), the first-hit policy and the
decision models every other layer speaks. Depends only on `rules.language`."""
