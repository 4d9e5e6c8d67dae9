"""`destinations remove`, `destinations test` and `--eu`, end to end.

Each runs the real command line in-process against the emulator on loopback.
`--eu` must talk to SendGrid's EU host: the tests put a transport under the
client that answers for any host from the emulator and records which host
each request was addressed to, so nothing leaves the machine and the test
still sees the address segsync chose.
"""

from __future__ import annotations

import io

import httpx
import orjson
import pytest

from cli.main import main
from connector.client import SendGridClient
from connector.hosts import EU_URL, GLOBAL_URL
from store.history import History
from store.paths import history_path
from store.secrets import KeyStore
from tests.engine.conftest import run_cli

pytestmark = pytest.mark.slow  # end to end against the emulator


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run_cli(main, *argv)
    out, err = capsys.readouterr()
    return code, out, err


class ToEmulator(httpx.AsyncBaseTransport):
    """Serves every request from the emulator, keeping the host it was meant for."""

    def __init__(self, emulator_url: str, hosts: list[str]) -> None:
        self.target = httpx.URL(emulator_url)
        self.hosts = hosts
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.hosts.append(request.url.host)
        request.url = request.url.copy_with(
            scheme=self.target.scheme, host=self.target.host, port=self.target.port
        )
        request.headers["Host"] = f"{self.target.host}:{self.target.port}"
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
def hosts(export_env, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hosts the command line's clients addressed (served by the emulator)."""
    seen: list[str] = []

    def client(*args, **kwargs) -> SendGridClient:
        kwargs["transport"] = ToEmulator(export_env.emulator.url, seen)
        return SendGridClient(*args, **kwargs)

    import connector.destinations
    import connector.services

    monkeypatch.setattr(connector.destinations, "SendGridClient", client)
    monkeypatch.setattr(connector.services, "SendGridClient", client)
    return seen


def test_eu_destination_is_added_tested_and_recorded_on_the_eu_host(export_env, capsys, hosts):
    code, out, err = cli(
        capsys,
        "destinations", "add", "eu_news", "--list-id", export_env.list_id,
        "--api-key-env", "DEST_KEY", "--eu", "--agree",
    )  # fmt: skip
    assert code == 0, err
    assert "added 'eu_news'" in out
    assert hosts and set(hosts) == {"api.eu.sendgrid.com"}  # never the global host
    dest = History(history_path(export_env.state_dir)).get_destination("eu_news")
    assert dest.base_url == EU_URL == "https://api.eu.sendgrid.com"

    hosts.clear()
    code, out, err = cli(capsys, "destinations", "test", "eu_news")
    assert code == 0, (out, err)
    assert set(hosts) == {"api.eu.sendgrid.com"}
    lines = out.splitlines()
    assert lines and all(line.startswith("pass  ") for line in lines), out

    code, out, _err = cli(capsys, "destinations", "show", "eu_news", "--json")
    assert code == 0
    assert orjson.loads(out)["base_url"] == EU_URL


def test_without_eu_the_global_host_is_used(export_env, capsys, hosts):
    code, _out, err = cli(
        capsys,
        "destinations", "add", "global_news", "--list-id", export_env.list_id,
        "--api-key-env", "DEST_KEY", "--agree",
    )  # fmt: skip
    assert code == 0, err
    assert set(hosts) == {"api.sendgrid.com"}
    dest = History(history_path(export_env.state_dir)).get_destination("global_news")
    assert dest.base_url == GLOBAL_URL


def test_destinations_test_fails_with_exit_1_naming_the_missing_list(export_env, capsys):
    code, out, err = cli(capsys, "destinations", "test", "news")
    assert code == 0, (out, err)
    assert all(line.startswith("pass  ") for line in out.splitlines()), out

    with export_env.emulator.state.lock:  # the list is deleted in SendGrid
        del export_env.emulator.state.lists[export_env.list_id]
    code, out, err = cli(capsys, "destinations", "test", "news")
    assert code == 1, (out, err)
    failed = [line for line in out.splitlines() if line.startswith("FAIL  ")]
    assert failed, out
    assert any("list" in line.lower() for line in failed), out


def test_destinations_remove_forgets_the_key_keeps_the_runs_and_frees_the_name(
    export_env, capsys, monkeypatch
):
    monkeypatch.setattr("sys.stdin", io.StringIO(export_env.emulator.api_key + "\n"))
    code, _out, err = cli(
        capsys,
        "destinations", "add", "stored", "--list-id", export_env.list_id,
        "--api-key-stdin", "--base-url", export_env.emulator.url, "--agree",
    )  # fmt: skip
    assert code == 0, err
    run_cli(main, "map", "stored", "email=email", "--consent-column", "email_opt_in")
    assert run_cli(main, "export", "stored", "--segment", "germany") == 0
    history = History(history_path(export_env.state_dir))
    dest = history.get_destination("stored")
    runs_before = [r.id for r in history.list_runs(destination=dest.id, limit=None)]
    assert len(runs_before) == 1
    keys = KeyStore(export_env.state_dir)
    assert keys.load(dest.id, None, "stored").reveal() == export_env.emulator.api_key

    code, out, err = cli(capsys, "destinations", "remove", "stored")
    assert code == 0, err
    assert "removed 'stored'" in out
    with pytest.raises(LookupError):
        keys.load(dest.id, None, "stored")  # the key is gone
    assert [r.id for r in history.list_runs(destination=dest.id, limit=None)] == runs_before
    code, out, _err = cli(capsys, "destinations", "list", "--json")
    assert "stored" not in {d["name"] for d in orjson.loads(out)}
    code, _out, err = cli(capsys, "export", "stored", "--segment", "germany")
    assert code == 2, err  # no such destination any more
    assert "stored" in err

    code, _out, err = cli(capsys, "destinations", "remove", "stored")
    assert code == 2, err  # removing it twice says there is none

    code, _out, err = cli(
        capsys,
        "destinations", "add", "stored", "--list-id", export_env.list_id,
        "--api-key-env", "DEST_KEY", "--base-url", export_env.emulator.url, "--agree",
    )  # fmt: skip
    assert code == 0, err  # the name can be given to a new destination
    assert history.get_destination("stored").id != dest.id
