"""The pooled prober over https: it trusts what httpx trusts for the same `verify` (a CA bundle's path here), keeps
its TLS connections from round to round, and calls a replica whose certificate it cannot verify unreachable, in the
same words as a single call. A CA and a certificate for 127.0.0.1 are made for the test."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from benchmarks.daemon_scale_bench import OneAtATime, StatusServer, topology
from orchestrator.core.model import Status
from orchestrator.drivers.probe import EngineProber
from orchestrator.engine.client import HttpEngineClient

pytestmark = pytest.mark.slow  # starts a server process


def _certificate(subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey,
                 signer: ec.EllipticCurvePrivateKey, *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public)
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """Paths of a CA certificate, and of a server certificate for 127.0.0.1 it signed and its key."""
    folder = tmp_path_factory.mktemp("pki")
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "failover test CA")])
    server_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    ca = _certificate(ca_name, ca_name, ca_key.public_key(), ca_key, ca=True)
    cert = _certificate(server_name, ca_name, key.public_key(), ca_key, ca=False)
    paths = {name: folder / name for name in ("ca.pem", "cert.pem", "key.pem")}
    paths["ca.pem"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert.pem"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key.pem"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    return str(paths["ca.pem"]), str(paths["cert.pem"]), str(paths["key.pem"])


def words(detail: str) -> str:
    where, _, cause = detail.partition("/v1/status: ")
    return f"{where}/v1/status: {cause.split(' (')[0]}"


def test_replicas_behind_our_ca_answer_over_kept_tls_connections(pki: tuple[str, str, str]) -> None:
    ca, cert, key = pki
    assert Path(ca).exists()
    with StatusServer(6, tls=(cert, key)) as server, \
            HttpEngineClient(verify=ca, read_timeout=1.0, connect_timeout=1.0, attempts=1) as client:
        topo = topology(server, 6)
        prober = EngineProber(topo, client)
        first = prober.probe(1000.0)
        server.stats(reset=True)
        second = prober.probe(1001.0)
        stats = server.stats()
        single = EngineProber(topo, OneAtATime(client)).probe(1002.0)
    assert len(first.statuses) == 6 and second.statuses == first.statuses == single.statuses
    assert stats["requests"] == 6 and stats["connections"] == 1  # the second round reused every connection


def test_a_certificate_we_cannot_verify_is_unreachable_as_for_a_single_call(pki: tuple[str, str, str]) -> None:
    _, cert, key = pki
    with StatusServer(3, tls=(cert, key)) as server, \
            HttpEngineClient(read_timeout=1.0, connect_timeout=1.0, attempts=1) as client:  # the system's CAs
        topo = topology(server, 3)
        pooled = EngineProber(topo, client).probe(1000.0)
        single = EngineProber(topo, OneAtATime(client)).probe(1000.0)
    assert pooled.statuses == single.statuses == {}
    down = {o.subject: words(o.detail) for o in pooled.observations if o.status is Status.DOWN}
    assert down == {o.subject: words(o.detail) for o in single.observations if o.status is Status.DOWN}
    replicas = {name: text for name, text in down.items() if not name.startswith("site-")}
    assert len(replicas) == 3 and all(text.endswith("unreachable") for text in replicas.values())
    assert all("CERTIFICATE_VERIFY_FAILED" in o.detail for o in pooled.observations if o.subject in replicas)
