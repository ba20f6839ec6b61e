"""The cluster CA and per-agent certificates: agents and the control plane authenticate each other
with mutual TLS, because a checkpoint image is code and memory and restoring an unauthenticated
one would be remote code execution as root. Keys and certificates are written 0600.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import logging
import os
import pathlib
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 365
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Identity:
    """Where one party's TLS files are: the cluster CA certificate, its own certificate and key."""

    ca: pathlib.Path
    cert: pathlib.Path
    key: pathlib.Path


def _write_private(path: pathlib.Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    path.chmod(0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(directory: pathlib.Path, name: str = "mosix cluster CA") -> Identity:
    """Create the cluster CA (ca.crt, ca.key) in directory; returns it as an identity."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS * 10))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    ident = Identity(ca=directory / "ca.crt", cert=directory / "ca.crt", key=directory / "ca.key")
    _write_private(ident.key, _key_pem(key))
    _write_private(ident.ca, cert.public_bytes(serialization.Encoding.PEM))
    return ident


def issue(ca: Identity, directory: pathlib.Path, name: str, addresses: tuple[str, ...] = ()) -> Identity:
    """A certificate for one agent (or the control plane) signed by the CA, good as server and client."""
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca.key} is not an EC key")
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = [x509.DNSName(name)]
    alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    ident = Identity(ca=directory / "ca.crt", cert=directory / f"{name}.crt", key=directory / f"{name}.key")
    _write_private(ident.key, _key_pem(key))
    _write_private(ident.cert, cert.public_bytes(serialization.Encoding.PEM))
    if ident.ca != ca.cert:
        _write_private(ident.ca, ca.cert.read_bytes())
    return ident


def refusal(e: ssl.SSLError) -> str | None:
    """Why a server-side handshake refused its peer (no certificate, a foreign CA's, not TLS at all), or
    None when the peer only went away before or during it (a TCP readiness probe) or must be waited for."""
    if isinstance(e, (ssl.SSLWantReadError, ssl.SSLWantWriteError, ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return None
    if isinstance(e, ssl.SSLCertVerificationError):
        return e.verify_message
    return e.reason or str(e)


class _RefusalsLogged(ssl.SSLObject):
    """A server side (under asyncio) that logs the peers it refuses: asyncio reports a failed handshake only
    in debug mode."""

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except ssl.SSLError as e:
            if (why := refusal(e)) is not None:
                log.warning("refused a TLS peer: %s", why)
            raise


def server_context(ident: Identity) -> ssl.SSLContext:
    """TLS for the agent API: clients must present a certificate from the cluster CA; refusals are logged."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ident.ca))
    ctx.sslobject_class = _RefusalsLogged
    ctx.load_cert_chain(str(ident.cert), str(ident.key))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.num_tickets = 0  # no session resumption: every connection proves its certificate afresh
    return ctx


def client_context(ident: Identity) -> ssl.SSLContext:
    """TLS for calling a peer agent: the peer must be certified by the cluster CA; we show ours."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ident.ca))
    ctx.load_cert_chain(str(ident.cert), str(ident.key))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
