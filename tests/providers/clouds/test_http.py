"""JsonSession: what is retried and how long it waits, timeouts, links, and secrecy."""

from __future__ import annotations

import secrets
from email.utils import formatdate
from typing import Any, Iterator

import pytest

from drfleet.providers.clouds.base import ProviderError, ProviderUnavailable
from drfleet.providers.clouds.hetzner import HetznerClient
from drfleet.providers.http import JsonSession, collect_pages, equal_jitter, retry_after_seconds
from tests.contract_servers.hetzner import HetznerContract
from tests.fixtures.util import free_port
from tests.providers.clouds.harness import FakeClock

TOKEN_ENV = "DRFLEET_TEST_HTTP_TOKEN"


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    value = "tok-" + secrets.token_hex(20)
    monkeypatch.setenv(TOKEN_ENV, value)
    return value


@pytest.fixture
def api(token: str) -> Iterator[HetznerContract]:
    with HetznerContract(token=token) as server:
        yield server


def session_for(url: str, clock: FakeClock, **kwargs: Any) -> JsonSession:
    options: dict[str, Any] = dict(provider="hetzner", base_url=url, token_env=TOKEN_ENV,
                                   parse_error=HetznerClient.parse_error, sleep=clock.sleep,
                                   now=clock.now, jitter=None, max_attempts=4)
    options.update(kwargs)
    return JsonSession(**options)


@pytest.mark.parametrize("value,expected", [
    ("5", 5.0), (" 2.5 ", 2.5), ("-4", 0.0), ("soon", None), (None, None), ("", None),
    (formatdate(1_700_000_030, usegmt=True), 30.0),
    (formatdate(1_699_999_000, usegmt=True), 0.0),
])
def test_retry_after_is_seconds_or_an_http_date(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value, now=1_700_000_000) == expected


def test_backoff_doubles_up_to_the_cap(api: HetznerContract) -> None:
    clock = FakeClock()
    session = session_for(api.url, clock, max_attempts=5, backoff_base_seconds=1,
                          backoff_cap_seconds=3)
    api.fail_next(4, 503)

    session.get("/servers")

    assert clock.sleeps == [1.0, 2.0, 3.0, 3.0]


def test_equal_jitter_stays_within_half_to_full_delay() -> None:
    samples = [equal_jitter(8.0) for _ in range(200)]
    assert all(4.0 <= s <= 8.0 for s in samples) and len(set(samples)) > 1


def test_read_timeout_of_a_get_is_retried(api: HetznerContract) -> None:
    clock = FakeClock()
    session = session_for(api.url, clock, timeout_seconds=0.3)
    api.hang_next(1)
    try:
        assert session.get("/servers").status == 200
    finally:
        api.release()
    assert api.count("GET", r"/servers") == 2 and clock.sleeps == [1.0]


def test_read_timeout_of_a_post_is_not_repeated(api: HetznerContract) -> None:
    clock = FakeClock()
    session = session_for(api.url, clock, timeout_seconds=0.3)
    api.hang_next(1)
    try:
        with pytest.raises(ProviderUnavailable) as raised:
            session.post("/ssh_keys", json={"name": "k", "public_key": "ssh-ed25519 AAAA"})
    finally:
        api.release()
    assert api.count("POST", r"/ssh_keys") == 1 and clock.sleeps == []
    assert "may have carried out the request" in str(raised.value)


def test_refused_connection_fails_at_once(token: str) -> None:
    clock = FakeClock()
    session = session_for(f"http://127.0.0.1:{free_port()}/v1", clock)

    with pytest.raises(ProviderUnavailable) as raised:
        session.get("/servers")

    assert raised.value.facts["attempts"] == 1 and clock.sleeps == []
    assert token not in str(raised.value)


def test_gateway_html_page_is_still_a_provider_error(api: HetznerContract) -> None:
    api.fail_next(4, 502, body=b"<html><body>502 Bad Gateway</body></html>")

    with pytest.raises(ProviderUnavailable) as raised:
        session_for(api.url, FakeClock()).get("/servers")

    assert raised.value.status == 502 and raised.value.code is None


def test_links_to_another_host_are_not_followed(api: HetznerContract) -> None:
    session = session_for(api.url, FakeClock())

    with pytest.raises(ProviderError) as raised:
        session.get("https://collector.example/v1/servers?page=2")

    assert raised.value.facts["link_host"] == "collector.example"
    assert api.requests == []


def test_links_to_the_same_host_are_followed(api: HetznerContract) -> None:
    session = session_for(api.url, FakeClock())

    assert session.get(f"{api.url}/servers?page=1").status == 200


def test_provider_text_echoing_the_token_is_redacted(api: HetznerContract, token: str) -> None:
    api.fail_next(1, 400, body={"error": {"code": "invalid_input",
                                          "message": f"token {token} is malformed"}})

    with pytest.raises(ProviderError) as raised:
        session_for(api.url, FakeClock()).get("/servers")

    assert token not in str(raised.value) and "token *** is malformed" in str(raised.value)


def test_the_token_is_sent_as_a_bearer_header_but_not_shown(api: HetznerContract,
                                                             token: str) -> None:
    session = session_for(api.url, FakeClock())

    session.get("/servers")

    assert api.requests[0].authorized
    assert token not in repr(session) and TOKEN_ENV in repr(session)


def test_max_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError):
        session_for("http://127.0.0.1:1", FakeClock(), max_attempts=0)


def test_collect_pages_concatenates_until_no_cursor() -> None:
    pages = {None: ([1, 2], "b"), "b": ([3, 4], "c"), "c": ([5], None)}

    assert collect_pages(lambda cursor: pages[cursor], provider="test") == [1, 2, 3, 4, 5]


def test_collect_pages_refuses_a_repeated_cursor() -> None:
    with pytest.raises(ProviderError) as raised:
        collect_pages(lambda cursor: ([1], "same"), provider="test")

    assert raised.value.provider == "test" and "repeated" in str(raised.value)


def test_retry_after_on_503_is_honoured_too(api: HetznerContract) -> None:
    clock = FakeClock()
    api.fail_next(1, 503, retry_after="5")

    session_for(api.url, clock).get("/servers")

    assert clock.sleeps == [5.0]


def test_params_left_as_none_are_not_sent(api: HetznerContract) -> None:
    session_for(api.url, FakeClock()).get("/servers", params={"label_selector": None})

    assert api.requests[0].query == {}


def test_an_oversized_answer_is_refused_without_being_read_whole(token: str, monkeypatch) -> None:
    import socket
    import threading

    from drfleet.providers import http

    monkeypatch.setattr(http, "MAX_PAYLOAD_BYTES", 64 << 10)
    total, sent = 64 << 20, []
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % total)
            chunk, done = b"[" + b"1," * (1 << 15), 0
            try:
                while done < total:
                    conn.sendall(chunk)
                    done += len(chunk)
            except OSError:
                pass
            sent.append(done)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    session = session_for(f"http://127.0.0.1:{listener.getsockname()[1]}", FakeClock(), max_attempts=1)

    with pytest.raises(ProviderError, match="refused"):
        session.get("/servers")
    server.join(30)
    listener.close()
    assert sent and sent[0] < total // 4  # the client stopped reading and closed the connection
