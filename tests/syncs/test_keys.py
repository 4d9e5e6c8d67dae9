"""Keys for runs nobody watches: a keyring that never answers (locked, waiting
for a prompt nobody sees) is not waited for, and is not even asked when the
owner-only key file has the key."""

from __future__ import annotations

import threading
import time

import keyring
import pytest

from connector.syncs import UnattendedKeys
from store import secrets
from store.history import History
from store.secrets import KeyNotFound, KeyStore, Secret

KEY = "SG.unattended-test-key.abcdefghijklmnop"


@pytest.fixture
def hanging_keyring(monkeypatch):
    release = threading.Event()
    asked: list[str] = []

    def get_password(service: str, user: str) -> str:
        asked.append(user)
        release.wait(30)
        return KEY

    monkeypatch.setattr(secrets, "_keyring_usable", lambda: True)
    monkeypatch.setattr(keyring, "get_password", get_password)
    yield asked
    release.set()


def test_a_keyring_that_never_answers_is_given_up_on_with_the_fix(tmp_path, hanging_keyring):
    history = History(tmp_path / "history.db")
    dest = history.add_destination(
        "news", base_url="http://127.0.0.1:9", list_id="L", key_storage="keyring"
    )
    keys = UnattendedKeys(tmp_path, history, keyring_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(KeyNotFound) as refused:
        keys.load(dest.id, None, "news")
    assert time.monotonic() - started < 5
    assert hanging_keyring == [f"destination-{dest.id}"]
    message = str(refused.value)
    assert "'news' keeps its API key in the OS keyring" in message
    assert "segsync syncs key-file news" in message


def test_with_a_key_file_the_keyring_is_not_asked(tmp_path, hanging_keyring):
    history = History(tmp_path / "history.db")
    dest = history.add_destination(
        "news", base_url="http://127.0.0.1:9", list_id="L", key_storage="keyring"
    )
    KeyStore(tmp_path)._write_file(dest.id, Secret(KEY))
    started = time.monotonic()
    assert UnattendedKeys(tmp_path, history).load(dest.id, None, "news").reveal() == KEY
    assert time.monotonic() - started < 1
    assert hanging_keyring == []


def test_the_environment_variable_comes_first(tmp_path, monkeypatch, hanging_keyring):
    history = History(tmp_path / "history.db")
    dest = history.add_destination("news", base_url="http://127.0.0.1:9", list_id="L")
    monkeypatch.setenv("NEWS_KEY", KEY)
    assert UnattendedKeys(tmp_path, history).load(dest.id, "NEWS_KEY", "news").reveal() == KEY
    assert hanging_keyring == []
