"""`python -m rules validate [FILE ...]`: check policy files the way the service loads them.

Every error is printed at once as `path:line: message` and the exit status is 1; with no
errors it prints what was loaded and exits 0. Files are checked as part of their directory's
bundle (versions of a policy must agree, used policies must exist), so naming files only
narrows which errors are shown.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .loader import DEFAULT_POLICY_DIR, PolicyLoadError, load_bundle


def add_command(commands) -> None:
    cmd = commands.add_parser("validate", help="check policy files; errors as path:line: message",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.add_argument("files", nargs="*", type=Path, help="only report errors in these files")
    cmd.add_argument("--policies", type=Path, default=DEFAULT_POLICY_DIR, help="policy directory (default: %(default)s)")
    cmd.set_defaults(run=run)


def run(args) -> int:
    try:
        bundle = load_bundle(args.policies)
    except PolicyLoadError as exc:
        wanted = {f.resolve() for f in args.files}
        errors = [e for e in exc.errors if not wanted or Path(e.path).resolve() in wanted]
        for error in errors:
            print(error, file=sys.stderr)
        if not errors:
            print(f"the named files are valid, but other files in {args.policies} are not "
                  f"({len(exc.errors)} errors; run without file names to see them)", file=sys.stderr)
        return 1
    versions = sum(len(v) for v in bundle.policies.values())
    print(f"ok: {versions} versions of {len(bundle.policies)} policies, bundle {bundle.bundle_hash[:12]}")
    return 0
