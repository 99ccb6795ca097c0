"""The policy language: the policy file model, reading its YAML, the load-time checks, fact
values and arithmetic. Depends on nothing else in `rules`."""
