"""Certificates and keys for one control plane, made with the openssl CLI.

The venv has no ``cryptography`` wheel and openssl is on every Debian machine, so the CLI avoids a
dependency. EC P-256 keys instead of RSA keep generation near-instant (RSA-2048 costs ~0.2 s per key on a
busy 2-core box) and are accepted by every component, including service-account token signing (ES256).
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

SERVING_SANS = (
    "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
    "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
)


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise FileNotFoundError("openssl not found on PATH (Debian: apt-get install openssl)")
    subprocess.run([openssl, *args], cwd=cwd, check=True, capture_output=True)


def _ec_key(name: str, cwd: Path) -> None:
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", name, cwd=cwd)


def _signed_cert(name: str, subject: str, extensions: str, cwd: Path) -> None:
    _ec_key(f"{name}.key", cwd)
    _openssl("req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=cwd)
    (cwd / f"{name}.ext").write_text(extensions)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", f"{name}.crt", "-days", "3650", "-extfile", f"{name}.ext", cwd=cwd,
    )  # fmt: skip
    (cwd / f"{name}.csr").unlink()
    (cwd / f"{name}.ext").unlink()


def generate_pki(directory: Path) -> Pki:
    """CA, one serving cert (apiserver, controller-manager and scheduler all listen on 127.0.0.1, so one
    cert with that SAN serves all three and their health endpoints can be verified against the CA), an
    admin client cert in ``system:masters`` (cluster-admin through the bootstrap binding, as envtest does)
    and the service-account signing key pair that TokenRequest needs."""
    directory.mkdir(parents=True, exist_ok=True)
    d = directory
    _ec_key("ca.key", d)
    _openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-out", "ca.crt", "-days", "3650",
        "-subj", "/CN=kubetune-devcluster-ca",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )  # fmt: skip
    _signed_cert(
        "serving",
        "/CN=kube-apiserver",
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName={SERVING_SANS}\n",
        d,
    )
    _signed_cert(
        "admin",
        "/O=system:masters/CN=kubetune-admin",
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
        d,
    )
    _ec_key("sa.key", d)
    _openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)
    (d / "ca.srl").unlink(missing_ok=True)
    for key in d.glob("*.key"):
        key.chmod(0o600)
    return Pki(
        directory=d,
        ca_cert=d / "ca.crt",
        ca_key=d / "ca.key",
        serving_cert=d / "serving.crt",
        serving_key=d / "serving.key",
        admin_cert=d / "admin.crt",
        admin_key=d / "admin.key",
        sa_key=d / "sa.key",
        sa_pub=d / "sa.pub",
    )


@dataclass(frozen=True)
class WebhookPki:
    """A CA and one serving certificate for a webhook server on loopback (Kueue's)."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path


def generate_webhook_pki(directory: Path, ca_name: str, organization: str, dns_name: str) -> WebhookPki:
    """Certificates in the shape open-policy-agent/cert-controller (Kueue's certificate rotator) accepts as its
    own, so it keeps them instead of generating new ones: an RSA CA with its key in PKCS#1 and ``ca_name`` as DNS
    SAN, and a serving cert for ``dns_name`` (the webhook Service) that also carries IP 127.0.0.1, the address
    the apiserver dials. RSA costs about 0.2 s per key here; two keys, once per control plane."""
    directory.mkdir(parents=True, exist_ok=True)
    d = directory
    _openssl("genrsa", "-traditional", "-out", "ca.key", "2048", cwd=d)
    _openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-out", "ca.crt", "-days", "3650",
        "-subj", f"/O={organization}/CN={ca_name}", "-addext", f"subjectAltName=DNS:{ca_name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
        cwd=d,
    )  # fmt: skip
    _signed_cert(
        "serving",
        f"/CN={dns_name}",
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName=DNS:{dns_name},IP:127.0.0.1\n",
        d,
    )
    (d / "ca.srl").unlink(missing_ok=True)
    for key in d.glob("*.key"):
        key.chmod(0o600)
    return WebhookPki(d, d / "ca.crt", d / "ca.key", d / "serving.crt", d / "serving.key")


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, server: str, pki: Pki) -> Path:
    """Certificates are embedded so the kubeconfig stays valid when copied or read from another cwd."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "kubetune-dev", "cluster": {"server": server, "certificate-authority-data": b64(pki.ca_cert)}}
        ],
        "users": [
            {
                "name": "kubetune-admin",
                "user": {
                    "client-certificate-data": b64(pki.admin_cert),
                    "client-key-data": b64(pki.admin_key),
                },
            }
        ],
        "contexts": [{"name": "kubetune-dev", "context": {"cluster": "kubetune-dev", "user": "kubetune-admin"}}],
        "current-context": "kubetune-dev",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def write_token_kubeconfig(path: Path, server: str, ca_cert: Path, token: str) -> Path:
    """A kubeconfig that authenticates with a bearer token only: with the admin client certificate also
    present, the apiserver's x509 authenticator would win and the token would never be checked."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "kubetune-dev", "cluster": {"server": server, "certificate-authority-data": b64(ca_cert)}}
        ],
        "users": [{"name": "token-user", "user": {"token": token}}],
        "contexts": [{"name": "token", "context": {"cluster": "kubetune-dev", "user": "token-user"}}],
        "current-context": "token",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
