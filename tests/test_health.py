"""/healthz and /readyz against a real server whose database and broker go away."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import Server, free_port
from tests.services import Postgres, Valkey
from tests.waiting import until


@pytest.fixture
def own_services() -> Iterator[tuple[Postgres, Valkey]]:
    """A PostgreSQL and a Valkey of this test's own, which it may stop."""
    postgres = Postgres(free_port()).start()
    valkey = Valkey(free_port()).start()
    try:
        yield postgres, valkey
    finally:
        valkey.stop()
        postgres.remove()


def readiness(server: Server, status: int) -> httpx.Response:
    return until(
        lambda: server.client.get("/readyz"), lambda r: r.status_code == status, timeout=15
    )


def test_readyz_names_what_is_down_without_addresses_and_logs_the_details_once(
    make_server: Callable[..., Server], own_services: tuple[Postgres, Valkey]
) -> None:
    postgres, valkey = own_services
    server = make_server(database=postgres.new_database(), broker_url=valkey.url)
    assert readiness(server, 200).json()["status"] == "ready"
    addresses = ("127.0.0.1", "localhost", str(postgres.port), str(valkey.port))

    valkey.stop()
    answer = readiness(server, 503)
    assert not [a for a in addresses if a in answer.text], answer.text
    assert (answer.json()["status"], answer.json()["down"]) == ("unavailable", ["broker"])

    postgres.stop("fast")
    answer = until(
        lambda: server.client.get("/readyz"),
        lambda r: r.json()["database"]["reachable"] is False,
        timeout=15,
    )
    assert answer.json()["down"] == ["database", "broker"]
    assert answer.status_code == 503
    assert answer.json()["database"]["reachable"] is False
    assert answer.json()["broker"]["connected"] is False
    assert not [a for a in addresses if a in answer.text], answer.text
    for _ in range(3):
        assert server.client.get("/readyz").json()["down"] == ["database", "broker"]
    # The details are in the log, once for each change, not once for each probe.
    lines = [x for x in server.logs().splitlines() if "not ready" in x]
    assert len(lines) == 2, lines
    assert "broker" in lines[0] and "database" in lines[1]
    assert str(postgres.port) in lines[1]
