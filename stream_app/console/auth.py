"""Who may use the console: users with a role and an Argon2id password hash (:class:`UserStore`, a JSON file
written by ``synapse-stream console add-user``), and the per-session CSRF token (:func:`csrf_token`,
:func:`csrf_ok`).

Roles: a ``moderator`` reviews candidates; an ``analyst`` also sees the detector pages and creates and changes
detectors. The signed cookie (Starlette's ``SessionMiddleware``: HttpOnly, SameSite=strict, ``Secure`` with
``SYNAPSE_CONSOLE_SECURE_COOKIES``) holds a session id, looked up server-side (``sessions.py``), and the CSRF
token; every request that changes anything carries that token (a form field or the ``X-CSRF-Token`` header),
checked in constant time.
"""
from __future__ import annotations

import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from synapse_stream.exceptions import ConfigError

Role = Literal["moderator", "analyst"]
ROLES: tuple[str, ...] = ("moderator", "analyst")
USER_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8


@dataclass(frozen=True)
class User:
    name: str
    role: str
    stamp: str = field(default="", compare=False)   # changes with the password hash (see UserStore.stamp)

    @property
    def is_analyst(self) -> bool:
        return self.role == "analyst"

    def may(self, role: str) -> bool:
        """An analyst may do whatever a moderator may."""
        return role == "moderator" or self.role == role


class UserStore:
    """Users in a JSON file ``{"users": {name: {"role", "hash"}}}`` (written atomically, mode 0600)."""

    def __init__(self, path: str | os.PathLike, hasher: PasswordHasher | None = None) -> None:
        self.path = Path(path)
        self.hasher = hasher or PasswordHasher()
        self._lock = threading.Lock()
        self._dummy = self.hasher.hash(secrets.token_hex(8))   # verified against for unknown names (same timing)

    def _load(self) -> dict[str, dict]:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"users file {self.path}: {exc}") from None
        users = doc.get("users") if isinstance(doc, dict) else None
        return users if isinstance(users, dict) else {}

    def _save(self, users: dict[str, dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".users-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"users": users}, f, indent=2, sort_keys=True)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def add(self, name: str, password: str, role: str) -> User:
        """Add a user or change one's password and role."""
        if not USER_NAME.match(name or ""):
            raise ConfigError("user names use letters, digits, '_', '.', '@' and '-' (1 to 64)")
        if role not in ROLES:
            raise ConfigError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if len(password or "") < MIN_PASSWORD:
            raise ConfigError(f"passwords need at least {MIN_PASSWORD} characters")
        with self._lock:
            users = self._load()
            users[name] = {"role": role, "hash": self.hasher.hash(password)}
            self._save(users)
        return User(name, role)

    def remove(self, name: str) -> bool:
        with self._lock:
            users = self._load()
            if users.pop(name, None) is None:
                return False
            self._save(users)
        return True

    @staticmethod
    def stamp(password_hash: str) -> str:
        """A short digest of a user's stored hash: every ``add`` (a new salt) changes it, so a session made before a
        new password, or before the name was removed and added again, no longer matches."""
        return hashlib.sha256(password_hash.encode("utf-8")).hexdigest()[:16]

    def get(self, name: str) -> User | None:
        u = self._load().get(name)
        if not isinstance(u, dict) or u.get("role") not in ROLES:
            return None
        return User(name, u["role"], self.stamp(str(u.get("hash", ""))))

    def names(self) -> list[str]:
        return sorted(self._load())

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if ``password`` is theirs, else None (an unknown name costs the same time as a wrong password)."""
        u = self._load().get(name or "")
        stored = u.get("hash") if isinstance(u, dict) else None
        try:
            self.hasher.verify(stored or self._dummy, password or "")
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if stored is None or u.get("role") not in ROLES:
            return None
        if self.hasher.check_needs_rehash(stored):
            stored = self.hasher.hash(password)
            with self._lock:
                users = self._load()
                if name in users:
                    users[name]["hash"] = stored
                    self._save(users)
        return User(name, u["role"], self.stamp(stored))


def csrf_token(session: dict) -> str:
    """The session's CSRF token (made on first use)."""
    tok = session.get("csrf")
    if not isinstance(tok, str) or len(tok) < 32:
        tok = secrets.token_urlsafe(32)
        session["csrf"] = tok
    return tok


def csrf_ok(session: dict, given: str | None) -> bool:
    tok = session.get("csrf")
    return isinstance(tok, str) and isinstance(given, str) and hmac.compare_digest(tok.encode(), given.encode())
