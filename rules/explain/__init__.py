"""Explaining decisions and policies: the caseworker's rationale, what each audience may be told,
what would change a decision (what-if) and a policy version as a document. Depends on
`rules.engine` and `rules.language`."""
