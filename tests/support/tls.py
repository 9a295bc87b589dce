"""Throw-away certificates made with the ``openssl`` program: a CA, server and client
certificates signed by it, and unrelated CAs to prove that verification fails."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.tools import require_program

#: The names a server certificate is valid for: what tests connect to.
LOCAL_NAMES = ("DNS:localhost", "IP:127.0.0.1")

_CA_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
x509_extensions = ca_ext
[dn]
CN = {name}
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
"""

_LEAF_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = {name}
[leaf_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = {usage}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
{san}
"""


@dataclass(frozen=True)
class KeyPair:
    """A PEM certificate and its unencrypted PEM private key."""

    cert: Path
    key: Path


def _openssl(*args: str | Path) -> None:
    binary = require_program("openssl", "openssl")
    done = subprocess.run(
        [binary, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        command = " ".join(map(str, args))
        raise RuntimeError(f"openssl {command} failed:\n{done.stderr.strip()}")


def _new_key_args(key: Path) -> list[str | Path]:
    # P-256 keys: generated in milliseconds, unlike RSA.
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key]


class CertificateAuthority:
    """A self-signed CA in ``folder``; :meth:`issue` signs leaf certificates with it."""

    def __init__(self, folder: Path, name: str, cert: Path, key: Path) -> None:
        self.folder = folder
        self.name = name
        self.cert = cert
        self.key = key

    @classmethod
    def create(cls, folder: Path, name: str = "bellad test CA") -> CertificateAuthority:
        """Make a new CA; files are ``<slug>-ca.crt`` and ``<slug>-ca.key`` in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        slug = _slug(name)
        config = folder / f"{slug}-ca.cnf"
        config.write_text(_CA_CONFIG.format(name=name))
        cert, key = folder / f"{slug}-ca.crt", folder / f"{slug}-ca.key"
        _openssl(
            "req",
            "-x509",
            "-new",
            "-config",
            config,
            *_new_key_args(key),
            "-days",
            "2",
            "-out",
            cert,
        )
        return cls(folder, name, cert, key)

    def issue(self, name: str, *, usage: str, san: Sequence[str] = ()) -> KeyPair:
        """Sign a new key for ``name`` (the CN); ``usage`` is serverAuth or clientAuth."""
        slug = _slug(name)
        config = self.folder / f"{slug}.cnf"
        alt = f"subjectAltName = {','.join(san)}" if san else ""
        config.write_text(_LEAF_CONFIG.format(name=name, usage=usage, san=alt))
        cert, key, csr = (self.folder / f"{slug}.{ext}" for ext in ("crt", "key", "csr"))
        _openssl("req", "-new", "-config", config, *_new_key_args(key), "-out", csr)
        _openssl(
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            self.cert,
            "-CAkey",
            self.key,
            "-set_serial",
            f"0x{secrets.randbits(63):x}",
            "-days",
            "2",
            "-extfile",
            config,
            "-extensions",
            "leaf_ext",
            "-out",
            cert,
        )
        csr.unlink()
        return KeyPair(cert, key)

    def server_cert(self, name: str = "localhost") -> KeyPair:
        """A server certificate valid for ``localhost`` and ``127.0.0.1``."""
        return self.issue(name, usage="serverAuth", san=LOCAL_NAMES)

    def client_cert(self, name: str) -> KeyPair:
        """A client certificate whose CN is ``name`` (Mosquitto can use it as the username)."""
        return self.issue(name, usage="clientAuth")


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "cert"
