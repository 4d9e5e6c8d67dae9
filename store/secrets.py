"""API keys: where they are kept and how they are shown.

A SendGrid key can send mail as the account, so it never goes into the
history database, logs or the screen. It lives, in order of preference, in:

1. an environment variable the destination names (read at each run; handy
   for cron and CI, nothing stored by segsync);
2. the OS keyring (macOS Keychain, Windows Credential Locker, Secret Service)
   when a real one is usable;
3. a file ``<state>/keys/destination-<id>.key``, mode 0600, in a 0700 directory.

``Secret`` carries a key through the program so that printing, logging or
formatting it by accident shows only ``SG.ab…3xYz``.
"""

from __future__ import annotations

import contextlib
import hmac
import os
from pathlib import Path
from typing import Any, NoReturn

from store.atomic import write_atomic
from store.paths import keys_dir

KEYRING_SERVICE = "segsync"
NO_KEYRING_ENV = "SEGSYNC_NO_KEYRING"

__all__ = ["KeyNotFound", "KeyStore", "Secret", "mask"]


def mask(key: str) -> str:
    """``SG.ab…3xYz``: enough to tell keys apart, useless to an onlooker.

    Keys too short to spare 9 characters are fully hidden.
    """
    if len(key) < 20:
        return "…"
    return f"{key[:5]}…{key[-4:]}"


class Secret:
    """A key that masks itself in ``str``, ``repr`` and f-strings.

    ``reveal()`` is the only way to the key, so each use is deliberate and easy
    to find. Pickling is refused: a pickle would hold the key in plain text.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str | Secret) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str) or not value.strip():
            raise ValueError("an API key must be a non-empty string")
        self._value = value.strip()

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return mask(self._value)

    def __repr__(self) -> str:
        return f"Secret({mask(self._value)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __copy__(self) -> Secret:
        return self  # immutable; and copy would otherwise go through __reduce__

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled: it would store the key in plain text")


class KeyNotFound(LookupError):
    """No key for a destination; the message says how to provide one."""


def _keyring_usable() -> bool:
    """True when keyring would store keys in a real OS keyring.

    keyring never fails to import: with nothing usable it selects its ``fail``
    or ``null`` backend, or a chainer with nothing to chain, and low-priority
    backends such as keyrings.alt's plaintext file are no better than our own
    0600 file. Only a backend of priority >= 1 counts.
    """
    if os.environ.get(NO_KEYRING_ENV, "").strip() not in ("", "0"):
        return False
    try:
        import keyring
        from keyring.backends import chainer, fail, null
    except ImportError:
        return False

    def real(backend: Any) -> bool:
        if isinstance(backend, chainer.ChainerBackend):
            return any(real(b) for b in backend.backends)
        if isinstance(backend, fail.Keyring | null.Keyring):
            return False
        try:
            return float(backend.priority) >= 1
        except Exception:  # a backend whose priority probe fails is not usable
            return False

    try:
        return real(keyring.get_keyring())
    except Exception:  # broken keyring configuration: fall back to the file
        return False


def _username(destination_id: int) -> str:
    return f"destination-{destination_id}"


class KeyStore:
    """Saves, loads and forgets destinations' API keys under ``state_dir``."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)

    def _file(self, destination_id: int) -> Path:
        return keys_dir(self.state_dir) / f"destination-{destination_id}.key"

    def save(self, destination_id: int, key: str | Secret) -> str:
        """Store the key; returns where: ``'keyring'`` or ``'file'``.

        A keyring that refuses (locked, no session bus) falls back to the file.
        Whichever is used, a copy in the other place is removed so an old key
        cannot shadow the new one.
        """
        secret = Secret(key)
        if _keyring_usable():
            import keyring
            from keyring.errors import KeyringError

            try:
                keyring.set_password(KEYRING_SERVICE, _username(destination_id), secret.reveal())
            except KeyringError:
                pass
            else:
                self._file(destination_id).unlink(missing_ok=True)
                return "keyring"
        self._write_file(destination_id, secret)
        self._forget_keyring(destination_id)
        return "file"

    def _write_file(self, destination_id: int, secret: Secret) -> None:
        """Write via a 0600 temp file renamed into place: never a partial key,
        never a moment where the key is readable by others."""
        write_atomic(
            self._file(destination_id),
            lambda handle: handle.write(secret.reveal().encode() + b"\n"),
        )

    def load(
        self, destination_id: int, env_var: str | None = None, label: str | None = None
    ) -> Secret:
        """The destination's key: from ``env_var`` when it is set, else the
        keyring, else the key file. ``label`` (the destination's name) is used
        in the error message."""
        if env_var and os.environ.get(env_var, "").strip():
            return Secret(os.environ[env_var])
        if _keyring_usable():
            import keyring
            from keyring.errors import KeyringError

            with contextlib.suppress(KeyringError):
                value = keyring.get_password(KEYRING_SERVICE, _username(destination_id))
                if value:
                    return Secret(value)
        path = self._file(destination_id)
        if path.exists():
            value = path.read_text(encoding="utf-8").strip()
            if value:
                return Secret(value)
        name = repr(label) if label else f"#{destination_id}"
        how = (
            f"set the environment variable {env_var}"
            if env_var
            else "store one with `segsync destinations add` (--api-key-stdin or --api-key-env)"
        )
        raise KeyNotFound(f"no API key for destination {name}: {how}")

    def forget(self, destination_id: int) -> bool:
        """Remove the stored key (keyring and file); True if one was removed."""
        removed = self._forget_keyring(destination_id)
        path = self._file(destination_id)
        if path.exists():
            path.unlink()
            removed = True
        return removed

    def _forget_keyring(self, destination_id: int) -> bool:
        if not _keyring_usable():
            return False
        import keyring
        from keyring.errors import KeyringError, PasswordDeleteError

        try:
            keyring.delete_password(KEYRING_SERVICE, _username(destination_id))
        except (PasswordDeleteError, KeyringError):
            return False
        return True
