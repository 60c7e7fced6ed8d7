"""Both product images built on a real Docker engine and run as shipped: read-only root, uid 10001,
every capability dropped, on a network that reaches nothing outside this machine. Lean: each image
carries what its process imports and no installer; sizes and the bot's memory at ready within the
budgets the README publishes (bench/images.py measures the figures)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.images.conftest import DOCKER, ROOT, docker, http, ip_of, run, wait_for

# Generous: the first run on a machine builds the base and product images inside the fixtures.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

# Budgets (README "Container images"). The bot image was 459 MB on the same base before issue 12 (its
# target: at most two thirds), 300 MB before #17 took ccxt, websockets and prometheus-client out of it.
BOT_IMAGE_MB = 215
OPERATOR_IMAGE_MB = 320
BOT_RSS_AT_READY_MIB = 100  # bench/footprint.py's per-bot budget, now held inside the image
HARDENED = ["--read-only", "--cap-drop", "ALL", "--tmpfs", "/tmp", "--security-opt", "no-new-privileges"]


def _lock_names(image: str) -> set[str]:
    text = (ROOT / "requirements" / f"{image}.lock").read_text()
    return {m.lower().replace("_", "-") for m in re.findall(r"^([A-Za-z0-9._-]+)==", text, re.M)}


def _distributions(tag: str) -> set[str]:
    out = docker("run", "--rm", "--entrypoint", "python", tag, "-c",
                 "import importlib.metadata as m; print('\\n'.join(d.metadata['Name'] for d in m.distributions()))")  # fmt: skip
    return {n.strip().lower().replace("_", "-") for n in out.split()}


def _start_sim(network: str, *args: str) -> str:
    name = f"{network}-sim"
    docker("run", "-d", "--name", name, "--network", network, *HARDENED, "--health-interval", "1s",
           "--health-start-period", "1s", "tradefleet-bot:dev", "sim", "--host", "0.0.0.0", "--port", "8765", *args)  # fmt: skip
    return name


def test_buildkit_builds_both_dockerfiles_offline_too(images: dict[str, str]) -> None:
    """BuildKit is what users get by default; with no `# syntax=` line its built-in frontend needs no
    registry. The classic builder built the images every other test here runs."""
    out = run(
        "bash",
        "scripts/images.sh",
        "product",
        timeout=1800,
        env={**os.environ, "BUILDER": "buildkit", "TAG": "buildkit"},
    )
    assert "tradefleet-bot:buildkit (buildkit)" in out and "tradefleet-operator:buildkit (buildkit)" in out
    for kind in ("bot", "operator"):
        assert "usage: tradefleet" in docker("run", "--rm", f"tradefleet-{kind}:buildkit", "--help")


def test_bot_runs_read_only_as_10001_without_capabilities_and_gets_ready(
    images: dict[str, str], network: str
) -> None:
    sim = _start_sim(network)
    bot = f"{network}-bot"
    docker("run", "-d", "--name", bot, "--network", network, *HARDENED, "-e", f"TRADEFLEET_REST_URL=http://{sim}:8765",
           "-e", f"TRADEFLEET_WS_URL=ws://{sim}:8765", images["bot"])  # fmt: skip
    url = f"http://{ip_of(bot)}:8080"
    wait_for("the bot's /readyz 200", lambda: http(url + "/readyz")[0] == 200, 120,
             lambda: f"{http(url + '/status')}\n{docker('logs', '--tail', '30', bot, check=False)}")  # fmt: skip
    assert http(url + "/livez")[0] == 200
    assert docker("exec", bot, "id", "-u").strip() == "10001"
    status = docker("exec", bot, "cat", "/proc/1/status")
    assert re.search(r"^CapEff:\s+0+$", status, re.M), "capabilities left"
    assert "Read-only file system" in run("sh", "-c", f"{DOCKER} exec {bot} touch /opt/x 2>&1", check=False)
    # The image's own HEALTHCHECK is `tradefleet health`, and it tells: this bot can trade.
    config = json.loads(docker("image", "inspect", images["bot"]))[0]["Config"]
    assert config["Healthcheck"]["Test"] == ["CMD", "tradefleet", "health"]
    assert docker("exec", bot, "tradefleet", "health").strip() == "bot /readyz: 200"
    rss_kib = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))  # type: ignore[union-attr]
    assert rss_kib / 1024 <= BOT_RSS_AT_READY_MIB, f"bot RSS at ready {rss_kib / 1024:.0f} MiB"
    # The image carries the native book and the bot runs on it, saying so once in its log.
    paths = [e.get("path") for e in _log_events(bot) if e.get("event") == "book_path"]
    assert paths == ["native"], docker("logs", "--tail", "30", bot, check=False)


def _log_events(container: str) -> list[dict[str, object]]:
    """The container's JSON log lines (stdout and stderr), as objects."""
    proc = run("sh", "-c", f"{DOCKER} logs {container} 2>&1")
    return [json.loads(line) for line in proc.splitlines() if line.startswith("{")]


def test_bot_image_carries_the_native_book_and_reads_frames_with_it(images: dict[str, str]) -> None:
    """tradefleet_native (the wheel scripts/native-wheel.sh built) is installed in the image, loads on
    its Python and glibc, and the bot's parser and book take the native path by default."""
    probe = (
        "from tradefleet.adapters.binance import BinanceSpot; from tradefleet.domain import native_book;"
        "from tradefleet.engine.book_keeper import BookKeeper;"
        'f = b\'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT",'
        '"U":1,"u":2,"b":[["100.5","1"]],"a":[]}}\';'
        "p = BinanceSpot(); p.parse(f); d = p.parse(f);"
        "print(native_book.AVAILABLE, type(d).__name__, d.bids, native_book.new_book_sync('BTCUSDT').__class__.__name__)"
    )
    out = docker("run", "--rm", "--entrypoint", "python", images["bot"], "-c", probe)
    assert out.split(None, 2)[:2] == ["True", "ParsedDiff"] and out.strip().endswith("NativeBookSync"), out


# What a bot and the simulator import (the live path, the probes, the HEALTHCHECK's command).
BOT_IMAGE_MODULES = (
    "tradefleet.app.bot_main", "tradefleet.app.runtime", "tradefleet.adapters.feed", "tradefleet.adapters.market_rest",
    "tradefleet.adapters.paper", "tradefleet.store.sqlite", "tradefleet.web.http", "tradefleet.engine.order_manager",
    "tradefleet.app.health", "tradefleet_sim",
)  # fmt: skip


def test_bot_image_runs_optimized_from_pycs_compiled_at_build(images: dict[str, str]) -> None:
    """PYTHONOPTIMIZE=2 (no docstrings in memory: README "Memory") needs `.opt-2.pyc` files; with
    PYTHONDONTWRITEBYTECODE a module without one is compiled again at every start, in the bot's heap.
    Every module the bot's and the simulator's code import must have its pyc in the image."""
    probe = (
        "import importlib, importlib.util, os, sys\n"
        f"for m in {BOT_IMAGE_MODULES!r}: importlib.import_module(m)\n"
        "files = [getattr(m, '__file__', None) or '' for m in list(sys.modules.values())]\n"
        "missing = sorted(f for f in files if f.endswith('.py')"
        " and not os.path.exists(importlib.util.cache_from_source(f)))\n"
        "from tradefleet.app import bot_main\n"
        "columns = {p[2:] for p in bot_main.main.__code__.co_positions()}\n"
        "print(sys.flags.optimize, len(files), ' '.join(missing) or '-', columns == {(None, None)})\n"
    )
    optimize, loaded, missing, no_columns = docker(
        "run", "--rm", "--entrypoint", "python", images["bot"], "-c", probe
    ).split()
    assert optimize == "2", "the bot image does not run with PYTHONOPTIMIZE=2"
    # PYTHONNODEBUGRANGES at build and at run: code objects without column tables (README "Memory").
    assert no_columns == "True", "the bot's pycs carry column tables: compiled without PYTHONNODEBUGRANGES"
    assert int(loaded) > 300, f"only {loaded} modules: the probe did not import the bot"
    assert missing == "-", f"modules without a pyc in the image: {missing}"


def _ca_and_server_cert(tmp: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for `localhost` it signed, made with the openssl CLI."""
    ca_key, ca, key, csr, cert = (
        tmp / f"{name}-{n}" for n in ("ca.key", "ca.pem", "key.pem", "csr.pem", "cert.pem")
    )
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
        "-subj", f"/CN=tradefleet test CA {name}", "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
        "-keyout", str(key), "-out", str(csr))  # fmt: skip
    (tmp / "ext.cnf").write_text("subjectAltName=DNS:localhost\n")
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "2", "-extfile", str(tmp / "ext.cnf"), "-out", str(cert))  # fmt: skip
    for path in (ca, key, cert):
        path.chmod(0o644)
    return ca, cert, key


def test_bot_image_verifies_tls_through_the_ca_directory_alone(
    images: dict[str, str], tmp_path: Path
) -> None:
    """The image sets SSL_CERT_FILE to no file (the CA bundle in every bot's TLS context cost ~1.2 MiB):
    a server whose CA is in /etc/ssl/certs (by its hash link, as update-ca-certificates writes them) is
    trusted, one whose CA is not is refused, through both clients the bot uses: aiohttp (market REST,
    the user stream) and our own HTTP/1.1 client (every signed request, orders included)."""
    tmp_path.chmod(0o755)  # read by the image's uid 10001
    trusted_ca = _ca_and_server_cert(tmp_path, "trusted")[0]
    _ca_and_server_cert(tmp_path, "other")
    ca_hash = run("openssl", "x509", "-hash", "-noout", "-in", str(trusted_ca)).strip()
    probe = """
import asyncio, ssl, sys
import aiohttp
from aiohttp import web
from tradefleet.adapters.http_session import client_session
from tradefleet.adapters.http1 import Http1Client, Http1Error

async def fetch(cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    app = web.Application()
    app.router.add_get("/", lambda r: web.Response(text="ok"))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    http1 = Http1Client(f"https://localhost:{port}", timeout_s=10, headers={})
    try:
        async with client_session() as s, s.get(f"https://localhost:{port}/") as r:
            via_aiohttp = await r.text()
    except aiohttp.ClientConnectorCertificateError:
        via_aiohttp = "refused"
    try:
        via_http1 = (await http1.request("GET", "/")).body.decode()
    except Http1Error as e:
        via_http1 = "refused" if "CERTIFICATE_VERIFY_FAILED" in str(e) else f"error:{e}"
    finally:
        await http1.close()
        await runner.cleanup()
    return f"{via_aiohttp}/{via_http1}"

async def main():
    print(ssl.get_default_verify_paths().cafile, await fetch("/t/trusted-cert.pem", "/t/trusted-key.pem"),
          await fetch("/t/other-cert.pem", "/t/other-key.pem"))
asyncio.run(main())
"""
    out = docker("run", "--rm", "--entrypoint", "python", "-v", f"{tmp_path}:/t:ro",
                 "-v", f"{trusted_ca}:/etc/ssl/certs/{ca_hash}.0:ro", images["bot"], "-c", probe)  # fmt: skip
    assert out.split() == ["None", "ok/ok", "refused/refused"], out


def test_operator_runs_read_only_as_10001_and_serves_livez_without_an_api_server(
    images: dict[str, str], network: str, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        'clusters: [{name: none, cluster: {server: "http://127.0.0.1:9"}}]\n'
        "contexts: [{name: none, context: {cluster: none, user: none, namespace: default}}]\n"
        "current-context: none\nusers: [{name: none, user: {token: none}}]\n"
    )
    kubeconfig.chmod(0o644)
    op = f"{network}-operator"
    docker("run", "-d", "--name", op, "--network", network, *HARDENED, "-v", f"{kubeconfig}:/etc/kube/config:ro",
           "-e", "KUBECONFIG=/etc/kube/config", images["operator"], "operator", "--namespace", "default")  # fmt: skip
    url = f"http://{ip_of(op)}:8080/livez"
    wait_for("the operator's /livez 200", lambda: http(url)[0] == 200, 120,
             lambda: docker("logs", "--tail", "30", op, check=False))  # fmt: skip
    assert docker("exec", op, "id", "-u").strip() == "10001"
    assert docker("exec", op, "tradefleet", "health").strip() == "operator /livez: 200"


@pytest.mark.parametrize("kind", ["bot", "operator"])
def test_each_image_carries_only_what_its_process_imports(images: dict[str, str], kind: str) -> None:
    tag = images[kind]
    native = {"tradefleet-native"} if kind == "bot" else set()  # the native book (scripts/native-wheel.sh)
    assert _distributions(tag) == _lock_names(kind) | {"tradefleet"} | native
    probe = "import importlib.util as u; print(*[m for m in ('pip', 'setuptools', 'wheel', 'ensurepip') if u.find_spec(m)])"
    assert docker("run", "--rm", "--entrypoint", "python", tag, "-c", probe).strip() in ("", "ensurepip")
    assert docker("run", "--rm", "--entrypoint", "sh", tag, "-c", "command -v pip pip3 || true").strip() == ""
    # What the process imports at start is all there (and the other image's modules are not).
    module = {"bot": "tradefleet.app.bot_main", "operator": "tradingbot_operator.cli"}[kind]
    docker("run", "--rm", "--entrypoint", "python", tag, "-c", f"import {module}")
    if kind == "bot":
        assert {"kopf", "kubernetes"}.isdisjoint(_distributions(tag))
    else:
        assert {"ccxt", "pymongo", "websockets", "msgspec"}.isdisjoint(_distributions(tag))


def test_image_sizes_stay_within_the_published_budget(images: dict[str, str]) -> None:
    sizes = {k: int(docker("image", "inspect", "-f", "{{.Size}}", t)) / 1e6 for k, t in images.items()}
    assert sizes["bot"] <= BOT_IMAGE_MB, sizes
    assert sizes["operator"] <= OPERATOR_IMAGE_MB, sizes


def test_simulator_container_is_healthy_while_its_market_moves_and_says_when_it_stopped(
    images: dict[str, str], network: str
) -> None:
    """The one image runs the simulator too; its HEALTHCHECK asks the simulator, not a bot port."""
    looping = _start_sim(network, "--loop", "--history", "3040", "--autostart", "--speed", "500")
    wait_for("Docker to call the simulator healthy", lambda: _health(looping) == "healthy", 60,
             lambda: docker("inspect", "-f", "{{json .State.Health}}", looping))  # fmt: skip
    ended = f"{network}-ended"
    docker("run", "-d", "--name", ended, "--network", network, *HARDENED, "tradefleet-bot:dev", "sim", "--host",
           "0.0.0.0", "--port", "8765", "--history", "3040", "--autostart", "--speed", "500")  # fmt: skip
    url = f"http://{ip_of(ended)}:8765/sim/state"
    wait_for(
        "the replay to end", lambda: _field(http(url)[1], "replay_done") is True, 60, lambda: str(http(url))
    )
    proc = run("sh", "-c", f"{DOCKER} exec {ended} tradefleet health; echo rc=$?", check=False)
    assert "replay has ended" in proc and "rc=1" in proc
    state = http(f"http://{ip_of(looping)}:8765/sim/state")[1]
    assert state["replay_done"] is False and state["klines"]["laps"] >= 1
    assert _health(looping) == "healthy"


def _health(container: str) -> str:
    return docker("inspect", "-f", "{{.State.Health.Status}}", container).strip()


def _field(body: object, key: str) -> object:
    return body.get(key) if isinstance(body, dict) else None
