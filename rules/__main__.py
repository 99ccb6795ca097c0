"""Command-line tools for reviewers and policy teams: `python -m rules <command> --help`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rules.authoring import (
    annualreview,
    corpus,
    decidefile,
    doc,
    goldentest,
    impact,
    newversion,
    remediate,
    report,
    revise,
    validate,
    versiondiff,
)


def main(argv: list[str] | None = None) -> int:
    # Named as it was run: the console script (pyproject.toml) or the module.
    prog = "cms-policy" if Path(sys.argv[0]).name == "cms-policy" else "python -m rules"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    report.add_command(commands)
    doc.add_command(commands)
    validate.add_command(commands)
    goldentest.add_command(commands)
    decidefile.add_command(commands)
    newversion.add_command(commands)
    versiondiff.add_command(commands)
    corpus.add_command(commands)
    impact.add_command(commands)
    revise.add_command(commands)
    remediate.add_command(commands)
    annualreview.add_command(commands)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
