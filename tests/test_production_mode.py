"""Production refuses development defaults: outside development mode the server will not start
with the published JWT or receipt secret, and sandbox receipts are refused (`sandbox_disabled`)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import httpx
import pytest

from server.config import (
    DEV_RECEIPT_SECRET,
    DEV_SECRET,
    Config,
    ConfigError,
    check_deployment,
    from_env,
)
from server.money.payments import sign_sandbox_receipt
from tests.support.servers import RunningServer, inprocess_server

OWN = "an-operator-chosen-secret-of-32-bytes-or-more"


@pytest.mark.parametrize(
    ("env", "host", "development"),
    [({}, "127.0.0.1", True), ({}, "::1", True), ({}, "localhost", True),
     ({}, "0.0.0.0", False), ({}, "10.1.2.3", False), ({}, "giftwire.internal", False),
     ({"GIFTWIRE_ENV": "production"}, "127.0.0.1", False),
     ({"GIFTWIRE_ENV": "development"}, "0.0.0.0", True)],
)
def test_how_development_mode_is_decided(env: dict[str, str], host: str,
                                         development: bool) -> None:
    assert from_env({**env, "GIFTWIRE_HOST": host}).development is development


def test_production_refuses_each_default_secret_and_development_accepts_them() -> None:
    with pytest.raises(ConfigError, match="GIFTWIRE_JWT_SECRET"):
        check_deployment(Config(env="production", sandbox_receipt_secret=OWN))
    with pytest.raises(ConfigError, match="GIFTWIRE_SANDBOX_RECEIPT_SECRET"):
        check_deployment(Config(env="production", jwt_secret=OWN))
    check_deployment(Config(env="production", jwt_secret=OWN, sandbox_receipt_secret=OWN))
    defaults = Config(env="development", host="0.0.0.0")
    assert (defaults.jwt_secret, defaults.sandbox_receipt_secret) == (DEV_SECRET,
                                                                      DEV_RECEIPT_SECRET)
    check_deployment(defaults)
    check_deployment(Config())  # auto on loopback: `make run`, the tests, the load tester
    with pytest.raises(ConfigError, match="GIFTWIRE_ENV"):
        from_env({"GIFTWIRE_ENV": "staging"})


def _serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("GIFTWIRE_") and k not in ("REDIS_URL", "DATABASE_URL")}
    return subprocess.run([sys.executable, "-m", "server", "serve", *args],
                          env={**clean, **env}, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("env", "args", "named"),
    [({"GIFTWIRE_ENV": "production", "GIFTWIRE_SANDBOX_RECEIPT_SECRET": OWN}, (),
      "GIFTWIRE_JWT_SECRET"),
     ({"GIFTWIRE_ENV": "production", "GIFTWIRE_JWT_SECRET": OWN}, (),
      "GIFTWIRE_SANDBOX_RECEIPT_SECRET"),
     ({"GIFTWIRE_JWT_SECRET": OWN}, ("--host", "0.0.0.0"), "GIFTWIRE_SANDBOX_RECEIPT_SECRET")],
)
def test_the_server_will_not_start_with_a_default_secret_in_production(
    env: dict[str, str], args: tuple[str, ...], named: str
) -> None:
    """One clear line and exit status 2, before anything starts (no embedded servers, no
    traceback)."""
    done = _serve(env, *args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("giftwire: " + named), done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
async def production(config: Config, redis: object, pool: object
                     ) -> AsyncIterator[RunningServer]:
    cfg = dataclasses.replace(config, env="production", sandbox_receipt_secret=OWN)
    async with inprocess_server(cfg) as running:
        yield running


async def test_sandbox_receipts_are_refused_in_production_mode(production: RunningServer
                                                               ) -> None:
    rt = production.runtime
    token = rt.issuer.mint("buyer", "viewer")
    receipt = sign_sandbox_receipt(OWN, "buyer", "coins_70")
    async with httpx.AsyncClient(base_url=production.base_url) as http:
        r = await http.post("/api/purchases", json={"package": "coins_70", "receipt": receipt},
                            headers={"Authorization": "Bearer " + token})
    assert r.status_code == 403, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "sandbox_disabled"
    assert (await rt.components["wallet"].state("buyer")).coins == 0


async def test_development_mode_starts_with_the_defaults_and_takes_sandbox_receipts(
    config: Config, redis: object, pool: object
) -> None:
    cfg = dataclasses.replace(config, env="development", jwt_secret=DEV_SECRET,
                              sandbox_receipt_secret=DEV_RECEIPT_SECRET)
    async with inprocess_server(cfg) as server:
        rt = server.runtime
        token = rt.issuer.mint("buyer", "viewer")
        receipt = sign_sandbox_receipt(DEV_RECEIPT_SECRET, "buyer", "coins_70")
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            r = await http.post("/api/purchases",
                                json={"package": "coins_70", "receipt": receipt},
                                headers={"Authorization": "Bearer " + token})
        assert r.status_code == 200, r.text
        assert (await rt.components["wallet"].state("buyer")).coins == 70
