"""Packaging: the Kubernetes manifest (deploy/kubernetes.yaml) and the Dockerfile agree with each
other and with the service's real command line; the exec probe they use works over TLS; and
policies mounted the way a ConfigMap volume lays them out load and hot-reload."""
from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rules.engine.loader import DEFAULT_POLICY_DIR, load_bundle
from service import probe
from service.reload import LiveBundle, _signature

from .conftest import ROOT

MANIFEST = ROOT / "deploy" / "kubernetes.yaml"
DOCKERFILE = ROOT / "Dockerfile"


def _documents() -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    kinds = [d["kind"] for d in docs]
    assert len(kinds) == len(set(kinds))
    return {d["kind"]: d for d in docs}


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in DOCKERFILE.read_text().splitlines()
                                          if not line.lstrip().startswith("#")))
    return [(m[1].upper(), m[2].strip()) for m in re.finditer(r"^\s*(\w+)\s+(.*)$", text, re.M)]


def _service_flags() -> set[str]:
    result = subprocess.run([sys.executable, "-m", "service", "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", result.stdout))


@pytest.fixture(scope="module")
def container() -> dict:
    return _documents()["Deployment"]["spec"]["template"]["spec"]["containers"][0]


def test_the_manifest_runs_several_non_root_replicas_on_a_read_only_root(container):
    docs = _documents()
    assert set(docs) == {"ServiceAccount", "Deployment", "Service", "PodDisruptionBudget"}
    deployment = docs["Deployment"]
    assert deployment["spec"]["replicas"] >= 2
    pod = deployment["spec"]["template"]["spec"]
    user = dict(_dockerfile())["USER"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}" == user
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]["memory"]
    assert docs["PodDisruptionBudget"]["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_secrets_come_from_secret_references_never_literals(container):
    env = {e["name"]: e for e in container["env"]}
    for name in ("CMS_POLICY_DECISION_LOG", "CMS_POLICY_LOG_KEY", "PGPASSWORD"):
        assert "value" not in env[name] and env[name]["valueFrom"]["secretKeyRef"]["name"], name
    pod = _documents()["Deployment"]["spec"]["template"]["spec"]
    tls = next(v for v in pod["volumes"] if v["name"] == "tls")
    assert tls["secret"]["secretName"]


def test_the_port_the_probes_and_the_tls_files_fit_together(container):
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    args = dict(a.split("=", 1) for a in container["args"])
    assert Path(args["--tls-cert"]).parent == Path(args["--tls-key"]).parent == Path(mounts["tls"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["grpc"] == int(args["--port"]) == 50051
    assert str(ports["grpc"]) in dict(_dockerfile())["EXPOSE"].split()
    service_port = _documents()["Service"]["spec"]["ports"][0]
    assert service_port["targetPort"] == "grpc"
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = container[kind]["exec"]["command"]
        assert command[:3] == ["python", "-m", "service.probe"], kind
        files = [a.split("=", 1)[1] for a in command if a.startswith(("--tls-ca=", "--tls-cert="))]
        assert files and all(Path(f).parent == Path(mounts["tls"]) for f in files)
        assert container[kind]["timeoutSeconds"] > float(next(a for a in command if a.startswith("--timeout="))[10:])


def test_the_command_lines_use_only_flags_the_service_has(container):
    known = _service_flags()
    dockerfile = dict(_dockerfile())
    cmd = yaml.safe_load(dockerfile["CMD"])  # the exec form is a JSON array
    assert yaml.safe_load(dockerfile["ENTRYPOINT"]) == ["python", "-m", "service"]
    used = {a.split("=", 1)[0] for a in container["args"] + cmd if a.startswith("--")}
    assert used <= known, used - known
    assert "--insecure-plaintext" not in used  # off loopback, TLS


def test_the_dockerfile_builds_in_two_stages_and_runs_unprivileged():
    instructions = _dockerfile()
    stages = [args for ins, args in instructions if ins == "FROM"]
    assert [s.split()[-1] for s in stages] == ["builder", "runtime"]
    user = dict(instructions)["USER"]
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user)  # numeric, so runAsNonRoot can check it
    assert "HEALTHCHECK" not in dict(instructions)
    runtime = instructions[[i for i, (ins, _) in enumerate(instructions) if ins == "FROM"][1]:]
    assert not any(ins == "RUN" and "gcc" in args for ins, args in runtime)  # no compiler in the runtime image
    assert any(ins == "COPY" and args.startswith("--from=builder") for ins, args in runtime)
    # Everything the builder copies passes the .dockerignore.
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    copied = [word.rstrip("/") for ins, args in instructions if ins == "COPY" and not args.startswith("--from")
              for word in args.split()[:-1]]
    assert copied and set(copied) <= allowed, set(copied) - allowed
    readme = re.search(r'^readme = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M)[1]
    assert readme in copied  # setuptools reads it when building the wheel


# --- the probe -------------------------------------------------------------------------

def _certificate(name: str, issuer: tuple | None, tmp: Path, ca: bool = False) -> tuple:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer[0].subject if issuer else subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    (tmp / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    return cert, key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_probe_checks_health_over_tls(tmp_path):
    ca = _certificate("cms-policy-test-ca", None, tmp_path, ca=True)
    _certificate("cms-policy.test", ca, tmp_path)
    _certificate("other-ca", None, tmp_path, ca=True)
    port = _free_port()
    with open(tmp_path / "service.log", "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port),
                                 "--tls-cert", str(tmp_path / "cms-policy.test.crt"),
                                 "--tls-key", str(tmp_path / "cms-policy.test.key"),
                                 "--decision-log", str(tmp_path / "decisions.sqlite3"), "--no-watch"],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=out, text=True)
    try:
        assert proc.stdout.readline().startswith("listening on"), (tmp_path / "service.log").read_text()
        address = f"127.0.0.1:{port}"
        ca_file, cert_file = tmp_path / "cms-policy-test-ca.crt", tmp_path / "cms-policy.test.crt"
        assert probe.check(address, tls_ca=ca_file, tls_cert=cert_file) is None  # the name comes from the cert
        assert probe.check(address, tls_ca=ca_file, server_name="cms-policy.test") is None
        assert probe.check(address, tls_ca=tmp_path / "other-ca.crt", tls_cert=cert_file, timeout=3)  # untrusted
        assert probe.check(address, tls_ca=ca_file, server_name="elsewhere.test", timeout=3)  # wrong name
        assert probe.check(address, timeout=3)  # plaintext to a TLS port
        result = subprocess.run([sys.executable, "-m", "service.probe", f"--address={address}",
                                 f"--tls-ca={ca_file}", f"--tls-cert={cert_file}"],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    result = subprocess.run([sys.executable, "-m", "service.probe", f"--address={address}", "--timeout=2"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stderr.startswith("not serving: UNAVAILABLE")


# --- policies from a ConfigMap volume ------------------------------------------------------

def _configmap_volume(mount: Path, source: Path, generation: int) -> None:
    """Lay `source` out as kubelet does a ConfigMap volume whose items map keys to
    <policy>/<version>.yaml: a timestamped directory, `..data` pointing at it, and a symlink
    per top-level directory; an update writes a new directory and swaps `..data` in one rename."""
    mount.mkdir(exist_ok=True)
    stamp = f"..2024_01_0{generation}_00_00_00.000000001"
    shutil.copytree(source, mount / stamp)
    old = os.readlink(mount / "..data") if (mount / "..data").is_symlink() else None
    os.symlink(stamp, mount / "..data_tmp")
    os.rename(mount / "..data_tmp", mount / "..data")
    for child in sorted(source.iterdir()):
        if not (mount / child.name).is_symlink():
            os.symlink(f"..data/{child.name}", mount / child.name)
    if old:
        shutil.rmtree(mount / old)


def _contents(bundle) -> dict:
    return {(name, version): compiled.content_hash for name, versions in bundle.policies.items()
            for version, compiled in versions.items()}


def test_policies_in_a_configmap_volume_load_and_hot_reload(tmp_path):
    source = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, source)
    mount = tmp_path / "mount"
    _configmap_volume(mount, source, 1)
    baked = load_bundle(DEFAULT_POLICY_DIR)
    mounted = load_bundle(mount)
    assert _contents(mounted) == _contents(baked)  # the same versions, whatever the links
    live = LiveBundle(mounted, mount)
    before = _signature(mount)
    changed = source / "application_fee" / "2017.yaml"
    changed.write_text(changed.read_text() + "\n# updated through the ConfigMap\n")
    _configmap_volume(mount, source, 2)
    assert _signature(mount) != before  # the watcher sees the swap
    result = live.reload()
    assert result.changed and not result.refused
    now, was = _contents(live.current.bundle), _contents(baked)
    assert now.pop(("application_fee", "2017")) != was.pop(("application_fee", "2017"))  # the file changed
    assert now == was  # and nothing else
    broken = source / "application_fee" / "2024.yaml"
    broken.write_text(broken.read_text().replace("outcome:", "outcome_:", 1))
    _configmap_volume(mount, source, 3)
    refused = live.reload()
    assert refused.refused and live.current.bundle.bundle_hash == result.bundle_hash  # the last good one serves


def test_an_installed_package_carries_every_policy_file():
    """The image is a non-editable install: policy files its package data misses are not served (the
    earlier revisions were missed, so decisions logged under them could not be replayed there)."""
    import tomllib
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["rules"]
    packaged = {p for g in globs for p in (ROOT / "rules").glob(g)}
    assert packaged == set((ROOT / "rules" / "policies").rglob("*.yaml"))


def test_the_dockerfile_cmd_is_a_valid_exec_form():
    cmd = dict(_dockerfile())["CMD"]
    assert shlex.split(cmd)  # parses
    assert yaml.safe_load(cmd)[:2] == ["--host", "0.0.0.0"]
