"""`python -m rules doc`: a policy version as a Markdown document (rules/explain/markdown.py), or
with `--all` every version and an index written into a directory (docs/policies/)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rules.authoring import goldens
from rules.engine.loader import DEFAULT_POLICY_DIR, PolicyLoadError, load_bundle
from rules.explain.markdown import all_documents, document

DEFAULT_EXAMPLES_DIR = goldens.DEFAULT_DIR  # when absent, each document says it has no worked examples


def write_all(bundle, out: Path, examples_dir: Path | None = DEFAULT_EXAMPLES_DIR) -> list[Path]:
    """Write every document under `out`, remove `<policy>/*.md` files no version has, and return
    the paths written or removed whose content changed."""
    docs = all_documents(bundle, examples_dir)
    changed = []
    for rel, text in docs.items():
        path = out / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    for path in sorted(out.glob("*/*.md")):
        if path.relative_to(out).as_posix() not in docs:
            path.unlink()
            changed.append(path)
    return changed


def add_command(commands) -> None:
    parser = commands.add_parser("doc", help="render a policy version as a Markdown document",
                                 description="Render a policy version as a Markdown document; with --all, "
                                             "every version (and an index) into the --out directory.")
    parser.add_argument("policy", nargs="?")
    parser.add_argument("version", nargs="?")
    parser.add_argument("--policies", type=Path, default=DEFAULT_POLICY_DIR, help="policy directory")
    parser.add_argument("--examples", type=Path, default=DEFAULT_EXAMPLES_DIR,
                        help="golden cases directory (<policy>/<version>/*.yaml)")
    parser.add_argument("--output", type=Path, help="write the document to this file, not standard output")
    parser.add_argument("--all", action="store_true",
                        help="every version: write OUT/<policy>/<version>.md and OUT/README.md (an index)")
    parser.add_argument("--out", type=Path, help="with --all: the directory to write (e.g. docs/policies)")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    if args.all:
        if args.policy or args.version or args.output or not args.out:
            print("error: --all takes --out DIR and no policy, version or --output", file=sys.stderr)
            return 2
    elif not (args.policy and args.version) or args.out:
        print("error: give a policy and a version (or --all --out DIR)", file=sys.stderr)
        return 2
    try:
        bundle = load_bundle(args.policies)
    except PolicyLoadError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.all:
        changed = write_all(bundle, args.out, args.examples)
        for path in changed:
            print(f"{'wrote' if path.exists() else 'removed'} {path}")
        print(f"{len(changed)} of {sum(map(len, bundle.policies.values())) + 1} documents changed in {args.out}")
        return 0
    versions = bundle.policies.get(args.policy)
    if versions is None:
        print(f"unknown policy '{args.policy}' (policies: {', '.join(sorted(bundle.policies))})", file=sys.stderr)
        return 1
    if args.version not in versions:
        print(f"{args.policy} has no version '{args.version}' (versions: {', '.join(sorted(versions))})",
              file=sys.stderr)
        return 1
    text = document(versions[args.version], args.examples)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
