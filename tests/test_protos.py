"""The API's protos: `buf lint` (STANDARD, buf.yaml) is clean, and the google/rpc protos copied into
third_party/ (so that buf, and clients in other languages, resolve the imports without the Buf
Schema Registry) define what the googleapis-common-protos the service runs with defines."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import grpc_tools
import pytest
from google.protobuf import descriptor_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_tools import protoc

from .conftest import ROOT

BUF = ROOT / "node_modules" / ".bin" / "buf"
THIRD_PARTY = ROOT / "third_party" / "googleapis"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def test_buf_lint_is_clean():
    if not BUF.exists():
        message = f"buf is not installed ({BUF}): run `npm ci --ignore-scripts` (package.json)"
        if _in_ci():  # CI must lint: a missing buf is a broken set-up, not a reason to pass
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run([str(BUF), "lint"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("module", [status_pb2, error_details_pb2], ids=["status", "error_details"])
def test_the_copied_google_rpc_protos_match_the_installed_ones(module, tmp_path):
    name = module.DESCRIPTOR.name  # e.g. google/rpc/status.proto
    out = tmp_path / "set.pb"
    well_known = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/any.proto, duration.proto
    assert protoc.main(["protoc", f"-I{THIRD_PARTY}", f"-I{well_known}", f"--descriptor_set_out={out}",
                        str(THIRD_PARTY / name)]) == 0
    copied = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    installed = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(installed)
    assert _shape(copied) == _shape(installed), f"{name} differs from googleapis-common-protos' copy"


def _shape(file: descriptor_pb2.FileDescriptorProto) -> list:
    """Every message's fields (json_name aside: a runtime descriptor leaves it out)."""
    def fields(message):
        return [(f.name, f.number, f.label, f.type, f.type_name) for f in message.field] + \
               [(m.name, fields(m)) for m in message.nested_type]
    return [(m.name, fields(m)) for m in file.message_type]
