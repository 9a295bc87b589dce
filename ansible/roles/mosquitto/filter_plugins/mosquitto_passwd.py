"""The filter ``mosquitto_password_file``: a Mosquitto password file, idempotently.

``mosquitto_passwd`` salts every hash at random, so running it on each play
would rewrite the file every time. This filter takes the current file and
the wanted accounts (user name to password) and returns the new file: a
line whose hash still matches its password is kept as it is, a new or
changed account gets a fresh hash with a random salt, and accounts no longer
wanted are left out. Unchanged accounts thus give an unchanged file.

The hashes are Mosquitto 2's own format, as ``mosquitto_passwd`` writes it:
``user:$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from typing import Any

ITERATIONS = 101  # mosquitto_passwd's default
SALT_BYTES = 12
HASH_BYTES = 64


def _pbkdf2(password: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, HASH_BYTES)


def hash_password(password: str) -> str:
    """A new ``$7$`` hash of ``password`` with a random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _pbkdf2(password, salt, ITERATIONS)
    salt64, digest64 = base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    return f"$7${ITERATIONS}${salt64}${digest64}"


def matches(hashed: str, password: str) -> bool:
    """Whether a ``$7$`` hash from a password file is that of ``password``."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7":
        return False
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except ValueError:
        return False
    return hmac.compare_digest(_pbkdf2(password, salt, iterations), expected)


def mosquitto_password_file(current: str | None, accounts: Mapping[str, str]) -> str:
    """The password file for ``accounts``, keeping the lines of ``current`` that still match."""
    existing: dict[str, str] = {}
    for line in (current or "").splitlines():
        user, sep, hashed = line.strip().partition(":")
        if sep and user:
            existing[user] = hashed
    lines = []
    for user in sorted(accounts):
        if ":" in user or not user.strip():
            raise ValueError(f"{user!r} cannot be a Mosquitto user name")
        password = str(accounts[user])
        hashed = existing.get(user, "")
        lines.append(f"{user}:{hashed if matches(hashed, password) else hash_password(password)}")
    return "".join(f"{line}\n" for line in lines)


class FilterModule:
    """Ansible's entry point for the filters of this file."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"mosquitto_password_file": mosquitto_password_file}
