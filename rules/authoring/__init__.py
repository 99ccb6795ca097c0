"""The command-line tools of reviewers and policy teams (`python -m rules <command>`): validating,
testing and documenting policy versions, new versions and revisions, impact reports, replaying and
remediating logged decisions. Never imported by `service`."""
