"""`coord.resp`, the order path's own RESP2 client, against a real redis-server: requests written
before `call` returns, pipelining, error replies, the NOSCRIPT fallback, a server that restarts or
dies under it, AUTH, unix sockets; its parser on replies cut at every byte."""

from __future__ import annotations

import asyncio
import select
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import RedisServer, free_port, wait_for_port
from tradefleet.coord import redis_client
from tradefleet.coord.resp import (
    ReplyError,
    RespClient,
    RespConnectionError,
    RespParser,
    RespTimeoutError,
    Script,
    encode_command,
)


def _sync(server: RedisServer) -> redis.Redis:
    return redis.Redis(port=server.port, decode_responses=True)


async def _until_disconnected(client: RespClient) -> None:
    for _ in range(10_000):
        if not client.connected:
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the client never noticed the closed connection")


# --- the parser, on bytes ---------------------------------------------------------------------------

STREAM = (
    b"+OK\r\n"
    b":-42\r\n"
    b"$5\r\nhello\r\n"
    b"$-1\r\n"
    b"$4\r\na\r\nb\r\n"  # CRLF inside a bulk string
    b"$0\r\n\r\n"
    b"*3\r\n$2\r\nok\r\n:7\r\n*2\r\n+x\r\n*-1\r\n"
    b"-ERR wrong kind of value\r\n"
    b"*0\r\n"
    b"$6\r\n\xc3\xa9t\xc3\xa9!\r\n"
)


def _expected() -> list[Any]:
    return [
        "OK",
        -42,
        "hello",
        None,
        "a\r\nb",
        "",
        ["ok", 7, ["x", None]],
        "ERR wrong kind of value",
        [],
        "été!",
    ]


def _plain(replies: list[Any]) -> list[Any]:
    return [str(r) if isinstance(r, ReplyError) else r for r in replies]


def test_the_parser_reads_every_reply_type_whole() -> None:
    p = RespParser()
    p.feed(STREAM)
    replies = p.gets()
    assert _plain(replies) == _expected()
    assert isinstance(replies[7], ReplyError) and isinstance(replies[7], redis_client.RedisError)
    assert p.gets() == []


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_the_parser_holds_a_reply_split_across_reads_until_it_is_whole(size: int) -> None:
    p = RespParser()
    got: list[Any] = []
    for i in range(0, len(STREAM), size):
        got.extend(p.gets())  # nothing half-read is ever returned
        p.feed(STREAM[i : i + size])
    got.extend(p.gets())
    assert _plain(got) == _expected()


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_the_parser_returns_only_the_replies_complete_before_a_cut(cut: int) -> None:
    whole = RespParser()
    whole.feed(STREAM[:cut])
    before = _plain(whole.gets())
    assert before == _expected()[: len(before)]
    whole.feed(STREAM[cut:])
    assert before + _plain(whole.gets()) == _expected()


@pytest.mark.parametrize("junk", [b"?what\r\n", b":12x\r\n", b"$3\r\nabcXY", b"*-5\r\n", b"$-2\r\n"])
def test_the_parser_refuses_bytes_that_are_not_resp2(junk: bytes) -> None:
    p = RespParser()
    p.feed(junk)
    with pytest.raises(RespConnectionError):
        p.gets()


def test_commands_are_arrays_of_bulk_strings_and_bad_arguments_are_refused() -> None:
    assert (
        encode_command(["SET", "k", b"v\r\n", 12])
        == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n$2\r\n12\r\n"
    )
    with pytest.raises(TypeError, match="float"):
        encode_command(["SET", "k", 1.5])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="bool"):
        encode_command(["SET", "k", True])
    with pytest.raises(ValueError):
        encode_command([])


def test_urls_are_read_as_redis_py_reads_them() -> None:
    with pytest.raises(ValueError, match="ssl_cert_reqs"):
        RespClient("rediss://127.0.0.1:1/0?ssl_cert_reqs=sometimes", timeout_s=1)
    with pytest.raises(ValueError):
        RespClient("http://127.0.0.1:1/0", timeout_s=1)
    with pytest.raises(ValueError, match="timeout"):
        RespClient("redis://127.0.0.1:1/0", timeout_s=0)


# --- against a real redis-server -----------------------------------------------------------------


async def test_a_call_is_on_the_wire_before_it_returns_and_pipelined_calls_answer_in_order(
    redis_server,
) -> None:
    client = RespClient(redis_server.url, timeout_s=5)
    await client.connect()
    try:
        replies = [
            client.call("SET", "k", "1"),
            client.call("INCRBY", "k", 41),
            client.call("GET", "k"),
            client.call("GET", "missing"),
            client.call("RPUSH", "l", "a", "b"),
            client.call("LRANGE", "l", 0, -1),
        ]
        # The loop has not run since: only a write made inside `call` can have reached the server.
        # (A blocking client, so the loop stays stopped while it looks.)
        sync = _sync(redis_server)
        for _ in range(5000):
            if sync.get("k") == "42" and sync.llen("l") == 2:
                break
        assert sync.get("k") == "42"
        assert not any(r.done() for r in replies)
        assert await asyncio.gather(*replies) == ["OK", 42, "42", None, 2, ["a", "b"]]
    finally:
        await client.close()


async def test_read_ready_takes_replies_already_in_the_socket_without_a_turn_of_the_loop(
    redis_server,
) -> None:
    client = RespClient(redis_server.url, timeout_s=5)
    await client.connect()
    try:
        client.read_ready()  # nothing pending: nothing read
        first, second = client.call("SET", "k", "v"), client.call("GET", "k")
        proto = client._proto
        assert proto is not None and proto.fd is not None
        # With the loop stopped: wait until a reply is in the socket, and read it from there.
        for _ in range(3):
            if second.done():
                break
            select.select([proto.fd], [], [], 5)
            client.read_ready()
        assert first.done() and second.done()  # resolved here, not at the loop's next turns
        assert (first.result(), second.result()) == ("OK", "v")
        client.read_ready()  # nothing pending, nothing waiting: a no-op
        assert await client.call("GET", "k") == "v"  # the connection is as good as before
    finally:
        await client.close()


async def test_calls_made_before_the_connection_exists_leave_in_order_once_connected(redis_server) -> None:
    client = RespClient(redis_server.url, timeout_s=5)
    try:
        assert not client.connected
        replies = [
            client.call("SET", "n", "0"),
            *(client.call("INCR", "n") for _ in range(20)),
            client.call("GET", "n"),
        ]
        assert await asyncio.gather(*replies) == ["OK", *range(1, 21), "20"]
        assert client.connected
    finally:
        await client.close()


async def test_an_error_reply_fails_its_call_alone(redis_server) -> None:
    client = RespClient(redis_server.url, timeout_s=5)
    await client.connect()
    try:
        first = client.call("SET", "s", "text")
        bad = client.call("INCR", "s")
        unknown = client.call("NOSUCHCOMMAND")
        after = client.call("GET", "s")
        assert await first == "OK"
        with pytest.raises(ReplyError, match="not an integer"):
            await bad
        with pytest.raises(redis_client.RedisError, match="unknown command"):
            await unknown
        assert await after == "text"
        assert client.connected
    finally:
        await client.close()


ADD = Script.of("return tonumber(ARGV[1]) + redis.call('INCR', KEYS[1])")


async def test_evalsha_sends_the_script_again_after_a_script_flush_and_only_for_noscript(
    redis_server,
) -> None:
    sync = _sync(redis_server)
    client = RespClient(redis_server.url, timeout_s=5)
    await client.connect()
    try:
        assert sync.script_exists(ADD.sha) == [False]
        assert await client.evalsha(ADD, ["c"], [10]) == 11  # unknown to the server: sent as EVAL
        assert sync.script_exists(ADD.sha) == [True]
        assert await client.evalsha(ADD, ["c"], [10]) == 12
        sync.script_flush()
        # Pipelined with NOSCRIPTs: each caller gets its own answer; a script sent again runs after the
        # calls written behind its EVALSHA (the GET sees neither), in the order they were made.
        a = client.evalsha(ADD, ["c"], [100])
        b = client.call("GET", "c")
        c = client.evalsha(ADD, ["c"], [1000])
        assert await asyncio.gather(a, b, c) == [103, "2", 1004]
        # A script's own error is the caller's, never re-sent.
        boom = Script.of("redis.call('INCR', KEYS[1]); return redis.error_reply('NOSCRIPT not really')")
        sync.set("once", 0)
        with pytest.raises(ReplyError, match="not really"):
            await client.evalsha(boom, ["once"], [])
        assert sync.get("once") == "1"
        with pytest.raises(ReplyError, match="NOSCRIPT not really"):
            await client.evalsha(boom, ["once"], [])
        assert sync.get("once") == "2", "an EVALSHA that ran is never sent again"
    finally:
        await client.close()


async def test_a_server_restart_between_calls_fails_nothing_that_was_answered_and_the_next_call_reconnects(
    redis_server,
) -> None:
    client = RespClient(redis_server.url, timeout_s=5)
    try:
        assert await client.call("SET", "x", "1") == "OK"
        redis_server.stop()
        await _until_disconnected(client)
        with pytest.raises(RespConnectionError):  # nobody listening: the connect fails, cleanly
            await client.call("GET", "x")
        redis_server.start()
        assert await client.call("GET", "x") is None  # a new server (no persistence), reached again
        assert await client.evalsha(ADD, ["c"], [1]) == 2
    finally:
        await client.close()


async def test_a_server_killed_under_pending_calls_fails_them_all_and_the_next_call_reconnects(
    redis_server,
) -> None:
    client = RespClient(redis_server.url, timeout_s=30)
    await client.connect()
    try:
        blocked = client.call("BLPOP", "never", 0)  # the server holds the answer
        behind = client.call("PING")
        assert redis_server.proc is not None
        redis_server.proc.kill()
        redis_server.proc.wait()
        redis_server.proc = None
        for pending in (blocked, behind):
            with pytest.raises(RespConnectionError, match=r"lost|closed"):
                await pending
        assert not client.connected
        redis_server.start()
        assert await client.call("PING") == "PONG"
    finally:
        await client.close()


async def test_a_call_written_to_a_connection_the_server_already_closed_fails_and_the_next_reconnects(
    redis_server,
) -> None:
    client = RespClient(redis_server.url, timeout_s=30)
    await client.connect()
    try:
        redis_server.stop()
        redis_server.start()
        # The loop has not run since the server went away: the client still believes in the socket.
        stale = client.call("PING")
        with pytest.raises(RespConnectionError):
            await stale
        assert await client.call("PING") == "PONG"
    finally:
        await client.close()


async def test_a_call_not_answered_in_time_fails_every_pending_call_and_the_connection_is_remade(
    redis_server,
) -> None:
    client = RespClient(redis_server.url, timeout_s=30)
    await client.connect()
    try:
        stuck = client.call("BLPOP", "never", 0, timeout_s=0.05)  # never answered
        behind = client.call("PING")  # its answer would come after BLPOP's: no longer matchable
        with pytest.raises(RespTimeoutError):
            await stuck
        with pytest.raises(RespTimeoutError):
            await behind
        assert isinstance(RespTimeoutError("x"), redis_client.RedisTimeoutError)
        assert not client.connected
        assert await client.call("PING") == "PONG"
    finally:
        await client.close()


async def test_nobody_listening_is_a_connection_error_for_every_call_made_meanwhile() -> None:
    client = RespClient(f"redis://127.0.0.1:{free_port()}/0", timeout_s=5)
    calls = [client.call("PING") for _ in range(3)]
    for c in calls:
        with pytest.raises(RespConnectionError, match="connect"):
            await c
    with pytest.raises(redis_client.RedisConnectionError):
        await client.connect()


async def test_close_fails_pending_calls_and_a_later_call_connects_again(redis_server) -> None:
    client = RespClient(redis_server.url, timeout_s=30)
    await client.connect()
    blocked = client.call("BLPOP", "never", 0)
    await client.close()
    with pytest.raises(RespConnectionError, match="closed"):
        await blocked
    try:
        assert await client.call("PING") == "PONG"
    finally:
        await client.close()


async def test_a_cancelled_call_does_not_shift_the_replies_of_the_next(redis_server) -> None:
    client = RespClient(redis_server.url, timeout_s=5)
    await client.connect()
    try:
        first = client.call("SET", "a", "1")
        first.cancel()
        assert await client.call("SET", "b", "2") == "OK"
        assert await client.call("GET", "a") == "1"
    finally:
        await client.close()


# --- servers of their own: a password, a unix socket ----------------------------------------------


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A redis-server that wants a password (default user) and knows a user `bot`, also on a socket."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed"
    port, sock = free_port(), tmp_path / "redis.sock"
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path), "--unixsocket", str(sock), "--requirepass", "s3cret",
         "--user", "bot", "on", ">botpass", "~*", "&*", "+@all"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port)
        yield port, sock
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_auth_and_db_come_from_the_url(private_redis: tuple[int, Path]) -> None:
    port, _ = private_redis
    admin = redis.Redis(port=port, password="s3cret", db=3, decode_responses=True)
    admin.set("where", "db3")
    for url in (f"redis://:s3cret@127.0.0.1:{port}/3", f"redis://bot:botpass@127.0.0.1:{port}/3"):
        client = RespClient(url, timeout_s=5)
        try:
            assert await client.call("GET", "where") == "db3"
        finally:
            await client.close()


async def test_a_wrong_or_missing_password_is_an_error_the_callers_catch(
    private_redis: tuple[int, Path],
) -> None:
    port, _ = private_redis
    wrong = RespClient(f"redis://:nope@127.0.0.1:{port}/0", timeout_s=5)
    with pytest.raises(ReplyError, match=r"WRONGPASS|invalid"):
        await wrong.call("PING")
    assert not wrong.connected
    missing = RespClient(f"redis://127.0.0.1:{port}/0", timeout_s=5)
    try:
        with pytest.raises(redis_client.RedisError, match="NOAUTH"):
            await missing.call("PING")
    finally:
        await missing.close()


async def test_a_unix_socket_url_with_a_password_and_a_db(private_redis: tuple[int, Path]) -> None:
    port, sock = private_redis
    client = RespClient(f"unix://:s3cret@{sock}?db=5", timeout_s=5)
    try:
        assert await client.call("SET", "on", "socket") == "OK"
    finally:
        await client.close()
    assert redis.Redis(port=port, password="s3cret", db=5).get("on") == b"socket"


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A redis-server speaking only TLS, its certificate signed by a CA made here (openssl CLI)."""
    binary, openssl = shutil.which("redis-server"), shutil.which("openssl")
    assert binary, "redis-server is not installed"
    if openssl is None:
        pytest.fail("openssl is not installed (apt-get install openssl); .ci/run installs it")
    ca_key, ca, key, csr, crt, ext = (
        tmp_path / n for n in ("ca.key", "ca.crt", "s.key", "s.csr", "s.crt", "s.ext")
    )
    ext.write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nauthorityKeyIdentifier=keyid,issuer\n"
        "subjectKeyIdentifier=hash\n"
    )
    for cmd in (
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=tradefleet test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        [openssl, "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", crt,
         "-days", "2", "-extfile", ext],
    ):  # fmt: skip
        subprocess.run([str(c) for c in cmd], check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path), "--tls-cert-file", str(crt), "--tls-key-file", str(key),
         "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port)
        yield port, ca
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_rediss_urls_speak_tls_and_check_the_server_as_redis_py_does(
    tls_redis: tuple[int, Path],
) -> None:
    port, ca = tls_redis
    trusted = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}"
    client = RespClient(trusted, timeout_s=5)
    try:
        assert await client.call("SET", "over", "tls") == "OK"
    finally:
        await client.close()
    legacy = redis_client.connect(trusted, timeout_s=5)  # the same URL, read by redis-py
    try:
        assert await legacy.get("over") == "tls"
    finally:
        await legacy.aclose()
    # A server certificate nobody vouches for is refused (the system's CAs do not know this one) ...
    unknown = RespClient(f"rediss://127.0.0.1:{port}/0", timeout_s=5)
    with pytest.raises(RespConnectionError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        await unknown.call("PING")
    # ... unless the URL says not to check, as redis-py's `ssl_cert_reqs=none`.
    unchecked = RespClient(f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=none", timeout_s=5)
    try:
        assert await unchecked.call("GET", "over") == "tls"
    finally:
        await unchecked.close()
    # And a plain-text client on the TLS port does not get an answer it could misread.
    plain = RespClient(f"redis://127.0.0.1:{port}/0", timeout_s=5)
    with pytest.raises(redis_client.RedisError):
        await plain.call("PING", timeout_s=1)
    await plain.close()


async def test_a_tcp_connection_is_kept_alive_by_the_kernel(redis_server) -> None:
    import socket

    client = RespClient(redis_server.url, timeout_s=5)
    await client.connect()
    try:
        assert client._proto is not None and client._proto.transport is not None
        sock = client._proto.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60
    finally:
        await client.close()
