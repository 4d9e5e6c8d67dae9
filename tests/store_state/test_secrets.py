"""API keys stay out of sight: masked when shown, never in the history file."""

from __future__ import annotations

import copy
import logging
import pickle
import stat
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail
from keyring.errors import PasswordDeleteError

from store.history import History
from store.secrets import KeyNotFound, KeyStore, Secret, mask

KEY = "SG.abcdefghijklmnopqrstuv.wxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ3xYz"


class MemoryKeyring(KeyringBackend):
    """Stands in for the macOS/Windows/Secret Service keyring."""

    priority = 5  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.items.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


@pytest.fixture
def no_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGSYNC_NO_KEYRING", "1")


@pytest.fixture
def os_keyring(monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryKeyring]:
    monkeypatch.delenv("SEGSYNC_NO_KEYRING", raising=False)
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


def test_a_secret_never_shows_itself() -> None:
    secret = Secret(KEY)
    assert mask(KEY) == "SG.ab…3xYz"
    assert str(secret) == "SG.ab…3xYz"
    assert KEY not in repr(secret)
    assert KEY not in f"{secret} {secret!r} {[secret]} { ({'key': secret}) }"
    assert secret.reveal() == KEY
    assert Secret(f"  {KEY}\n").reveal() == KEY  # pasted with a newline
    assert Secret(secret) == secret
    assert copy.deepcopy(secret).reveal() == KEY
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(secret)
    assert mask("SG.short") == "…"  # too short to show any of it
    with pytest.raises(ValueError):
        Secret("   ")


def test_a_logged_secret_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("segsync.test").info("using key %s", Secret(KEY))
    assert "SG.ab…3xYz" in caplog.text
    assert KEY not in caplog.text


def test_without_a_keyring_the_key_goes_to_a_private_file(tmp_path: Path, no_keyring: None) -> None:
    keys = KeyStore(tmp_path)
    assert keys.save(4, KEY) == "file"
    key_file = tmp_path / "keys" / "destination-4.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert keys.load(4).reveal() == KEY
    assert not list(key_file.parent.glob(".*tmp"))  # the atomic write left nothing behind

    keys.save(4, Secret("SG." + "n" * 40 + "NEW1"))  # replacing a key
    assert keys.load(4).reveal().endswith("NEW1")
    assert keys.forget(4) is True
    assert not key_file.exists()
    assert keys.forget(4) is False


def test_the_named_env_var_wins(
    tmp_path: Path, no_keyring: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = KeyStore(tmp_path)
    keys.save(1, KEY)
    monkeypatch.setenv("SG_CRON_KEY", "SG.from-the-environment-0000")
    assert keys.load(1, "SG_CRON_KEY").reveal() == "SG.from-the-environment-0000"
    monkeypatch.setenv("SG_CRON_KEY", "")  # set but empty: fall back to the stored key
    assert keys.load(1, "SG_CRON_KEY").reveal() == KEY


def test_a_missing_key_says_how_to_provide_one(
    tmp_path: Path, no_keyring: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = KeyStore(tmp_path)
    monkeypatch.delenv("SG_CRON_KEY", raising=False)
    with pytest.raises(KeyNotFound, match="set the environment variable SG_CRON_KEY") as err:
        keys.load(2, "SG_CRON_KEY", label="newsletter")
    assert "'newsletter'" in str(err.value)
    with pytest.raises(KeyNotFound, match="--api-key-stdin"):
        keys.load(2)


def test_a_real_keyring_is_used_when_present(tmp_path: Path, os_keyring: MemoryKeyring) -> None:
    keys = KeyStore(tmp_path)
    assert keys.save(3, KEY) == "keyring"
    assert os_keyring.items == {("segsync", "destination-3"): KEY}
    assert not (tmp_path / "keys" / "destination-3.key").exists()
    assert keys.load(3).reveal() == KEY
    assert keys.forget(3) is True
    assert os_keyring.items == {}
    with pytest.raises(KeyNotFound):
        keys.load(3)


@pytest.mark.parametrize(
    "backend",
    [fail.Keyring(), chainer.ChainerBackend()],
    ids=["fail", "empty-chainer"],
)
def test_no_usable_keyring_falls_back_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: KeyringBackend
) -> None:
    monkeypatch.delenv("SEGSYNC_NO_KEYRING", raising=False)
    monkeypatch.setattr(chainer.ChainerBackend, "backends", [], raising=False)
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        keys = KeyStore(tmp_path)
        assert keys.save(5, KEY) == "file"
        assert keys.load(5).reveal() == KEY
    finally:
        keyring.set_keyring(previous)


def test_no_keyring_env_forces_the_file(
    tmp_path: Path, os_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEGSYNC_NO_KEYRING", "1")
    assert KeyStore(tmp_path).save(6, KEY) == "file"
    assert os_keyring.items == {}


def test_the_key_never_reaches_the_history_file(tmp_path: Path, no_keyring: None) -> None:
    """The flow of `segsync destinations add`: destination row, key, storage kind."""
    db = tmp_path / "history.db"
    keys = KeyStore(tmp_path)
    with History(db) as history:
        dest = history.add_destination(
            "newsletter", base_url="https://api.sendgrid.com", list_id="L1", key_storage="pending"
        )
        storage = keys.save(dest.id, Secret(KEY))
        history.update_destination(dest.id, key_storage=storage)
        run_id = history.start_run(dest.id, ["vip"], config={"key": str(Secret(KEY))})
        history.finish_run(run_id, "failed", message=f"bad key {Secret(KEY)}")
        assert history.get_destination(dest.id).key_storage == "file"
        stored = b"".join(p.read_bytes() for p in tmp_path.glob("history.db*"))
    assert len(stored) > 0
    assert KEY.encode() not in stored
    assert KEY[5:-4].encode() not in stored  # not even the hidden middle
