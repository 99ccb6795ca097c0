"""Build step: generate the gRPC stubs from protos/ into the cms_policy package.

Runs on every build (wheel, sdist, `pip install -e .`); the stubs are never
committed. Project metadata lives in pyproject.toml.
"""
from pathlib import Path

from setuptools import find_namespace_packages, find_packages, setup

ROOT = Path(__file__).resolve().parent


def generate_stubs() -> None:
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted((ROOT / "protos").rglob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    # google/rpc/status.proto (DecideBatchResult.error) ships with googleapis-common-protos, whose
    # generated modules the stubs import at run time (grpcio-status depends on it).
    import google.rpc
    googleapis = next(Path(p).parent.parent for p in google.rpc.__path__ if (Path(p) / "status.proto").is_file())
    args = ["protoc", f"-I{ROOT / 'protos'}", f"-I{include}", f"-I{googleapis}", f"--python_out={ROOT}",
            f"--pyi_out={ROOT}", f"--grpc_python_out={ROOT}"] + [str(p) for p in protos]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for proto in protos:
        package = ROOT / proto.parent.relative_to(ROOT / "protos")
        while package != ROOT:
            (package / "__init__.py").touch()
            package = package.parent


generate_stubs()
# The policy folders (rules/policies/<domain>/ and their revisions/) hold only YAML, shipped as the
# rules package's data (pyproject.toml); listed as namespace packages, or setuptools warns for each
# ("Package would be ignored").
policy_dirs = find_namespace_packages(include=["rules.policies", "rules.policies.*"], exclude=["*__pycache__*"])
# The same for the console's templates and static files (pyproject.toml's package-data).
console_dirs = ["console.templates", "console.static"]
setup(packages=find_packages(include=["rules*", "service*", "console*", "cms_policy*"]) + policy_dirs + console_dirs)
