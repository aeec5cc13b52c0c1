"""Dashboard users: a local file of salted password hashes, each user with a role.

``tapeflow users add NAME --role trader`` writes ``data/users.json`` (``TAPEFLOW_USERS_FILE``);
the dashboard then asks for a user name and password, checks them against the file, and every
command it sends carries the authenticated name. Roles:

- ``viewer``: sees every page; cannot send a command;
- ``trader``: also changes limits, uses the kill switch, cancels, flattens and re-arms.

Passwords are hashed with scrypt (``hashlib.scrypt``, memory-hard; n=2**14, r=8, p=1, a 16-byte
random salt per user, 32-byte key) and compared in constant time. The file holds no password,
only ``{"users": {name: {"role", "salt", "hash", "n", "r", "p"}}}``, and is written with mode
0600 through a temporary file and a rename, so a reader never sees half a file. Nothing here logs
a hash or a password.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

ROLES = ("viewer", "trader")
CONTROL_ROLES = frozenset({"trader"})  # roles that may send operator commands
USERS_ENV = "TAPEFLOW_USERS_FILE"
DEFAULT_USERS_PATH = Path("data/users.json")
NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD_LENGTH = 8
SCRYPT = {"n": 2**14, "r": 8, "p": 1}


class UsersFileError(ValueError):
    """The users file is unreadable or a change to it is refused; the message says which and why."""


@dataclass(frozen=True)
class User:
    name: str
    role: str

    @property
    def may_control(self) -> bool:
        return self.role in CONTROL_ROLES


def users_path() -> Path:
    return Path(os.environ.get(USERS_ENV) or DEFAULT_USERS_PATH)


def _hash(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32)


class UsersFile:
    """The users of one dashboard; a missing file means no users are configured."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._entries: dict[str, dict] = {}
        if self.path.exists():
            try:
                self._entries = dict(json.loads(self.path.read_text())["users"])
            except (ValueError, KeyError, TypeError) as exc:
                raise UsersFileError(f"users file {self.path} is not a tapeflow users file ({exc}); "
                                     "recreate it with `tapeflow users add`") from exc

    @property
    def configured(self) -> bool:
        return bool(self._entries)

    def users(self) -> list[User]:
        return [User(name, entry["role"]) for name, entry in sorted(self._entries.items())]

    def user(self, name: str | None) -> User | None:
        entry = self._entries.get(name or "")
        return User(name, entry["role"]) if entry else None  # type: ignore[arg-type]

    def add(self, name: str, password: str, role: str) -> User:
        """Add a user, or replace an existing user's password and role."""
        if not NAME.match(name):
            raise UsersFileError(f"user name {name!r}: use 1-64 letters, digits or _ . @ -")
        if role not in ROLES:
            raise UsersFileError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise UsersFileError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
        salt = secrets.token_bytes(16)
        self._entries[name] = {"role": role, "salt": salt.hex(), "hash": _hash(password, salt, **SCRYPT).hex(),
                               **SCRYPT}
        self._save()
        return User(name, role)

    def remove(self, name: str) -> None:
        if name not in self._entries:
            raise UsersFileError(f"no user {name!r} in {self.path}")
        del self._entries[name]
        self._save()

    def verify(self, name: str, password: str) -> User | None:
        """The user, when the password is theirs; None otherwise (unknown name or wrong password)."""
        entry = self._entries.get(name)
        if entry is None:
            # the same work as for a known name, so the answer's timing does not tell names apart
            _hash(password, b"\0" * 16, **SCRYPT)
            return None
        computed = _hash(password, bytes.fromhex(entry["salt"]), entry["n"], entry["r"], entry["p"])
        if not hmac.compare_digest(computed, bytes.fromhex(entry["hash"])):
            return None
        return User(name, entry["role"])

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            json.dump({"users": self._entries}, out, indent=1, sort_keys=True)
        os.chmod(temporary, 0o600)
        os.replace(temporary, self.path)
