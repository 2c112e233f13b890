"""The security layer on a real Arrow Flight server and client: every refusal, roles per Flight
method, rate limits per credential and per address, and TLS with a generated certificate."""

from __future__ import annotations

import datetime as dt
import time

import pyarrow as pa
import pytest
from pyarrow import flight

from obsrvr_ray.security.security_settings import SecuritySettings
from obsrvr_ray.security.tls import generate_self_signed
from obsrvr_ray.serve.flight_auth import caller, flight_server_options
from tests.test_security_support import REJECTIONS, Creds, token

TABLE = pa.table({"ledger_sequence": pa.array([10, 11], pa.uint32()), "amount": pa.array([5, 7], pa.int64())})


class TransfersServer(flight.FlightServerBase):
    """A Flight server shaped like the live app's: reads, an ingest (do_put) and a control action."""

    def __init__(self, location: str, **options: object) -> None:
        super().__init__(location, **options)
        self.received: list[pa.Table] = []
        self.callers: list[str] = []

    def list_flights(self, context, criteria):
        self.callers.append(caller(context).id)
        descriptor = flight.FlightDescriptor.for_path("token_transfers")
        yield flight.FlightInfo(TABLE.schema, descriptor, [flight.FlightEndpoint(b"all", [])], TABLE.num_rows, -1)

    def do_get(self, context, ticket):
        self.callers.append(caller(context).id)
        return flight.RecordBatchStream(TABLE)

    def do_put(self, context, descriptor, reader, writer):
        self.callers.append(caller(context).id)
        self.received.append(reader.read_all())

    def do_action(self, context, action):
        self.callers.append(caller(context).id)
        yield flight.Result(b"stopped")


def start(settings: SecuritySettings) -> TransfersServer:
    options, scheme = flight_server_options(settings)
    return TransfersServer(f"{scheme}://127.0.0.1:0", **options)


def options(headers: dict[str, str]) -> flight.FlightCallOptions:
    return flight.FlightCallOptions(headers=[(k.lower().encode(), v.encode()) for k, v in headers.items()], timeout=10)


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> Creds:
    return Creds(tmp_path_factory.mktemp("flight-keys") / "keys.json")


@pytest.fixture(scope="module")
def server(creds: Creds):
    srv = start(creds.settings())
    try:
        yield srv
    finally:
        srv.shutdown()


@pytest.fixture
def client(server: TransfersServer):
    with flight.connect(f"grpc+tcp://127.0.0.1:{server.port}") as c:
        yield c


def test_valid_credentials_read(client, server, creds: Creds) -> None:
    for headers in [{"x-api-key": creds.reader}, {"authorization": f"Bearer {creds.reader}"},
                    {"authorization": f"Bearer {token(sub='dora')}"},
                    {"authorization": f"Bearer {token(creds.rsa_private, 'RS256')}"}]:
        assert client.do_get(flight.Ticket(b"all"), options(headers)).read_all().equals(TABLE)
        assert [f.total_records for f in client.list_flights(options=options(headers))] == [2]
    assert "jwt:dora" in server.callers


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_flight_refuses(client, creds: Creds, case: str) -> None:
    make_headers, status = REJECTIONS[case]
    expected = flight.FlightUnauthenticatedError if status == 401 else flight.FlightUnauthorizedError
    with pytest.raises(expected):
        client.do_get(flight.Ticket(b"all"), options(make_headers(creds))).read_all()
    with pytest.raises(expected):
        list(client.list_flights(options=options(make_headers(creds))))


def test_roles_per_flight_method(client, server, creds: Creds) -> None:
    def put(key: str) -> None:
        writer, _ = client.do_put(flight.FlightDescriptor.for_path("ingest"), TABLE.schema, options({"x-api-key": key}))
        writer.write_table(TABLE)
        writer.close()

    def act(key: str) -> list:
        return list(client.do_action(flight.Action("stop", b""), options({"x-api-key": key})))

    put(creds.processor)
    assert server.received[-1].equals(TABLE)
    assert [r.body.to_pybytes() for r in act(creds.processor)] == [b"stopped"]
    assert [r.body.to_pybytes() for r in act(creds.admin)] == [b"stopped"]
    with pytest.raises(flight.FlightUnauthorizedError):
        put(creds.reader)
    with pytest.raises(flight.FlightUnauthorizedError):
        act(creds.reader)
    with pytest.raises(flight.FlightUnauthorizedError):
        client.do_get(flight.Ticket(b"all"), options({"x-api-key": creds.processor})).read_all()
    _, reader = client.do_exchange(flight.FlightDescriptor.for_path("x"), options({"x-api-key": creds.reader}))
    with pytest.raises(flight.FlightUnauthorizedError, match="administer needs role admin"):  # unclassified method
        reader.read_all()


def test_rate_limit_per_credential(creds: Creds) -> None:
    srv = start(creds.settings(rate_per_key=0.2, burst_per_key=2))
    try:
        with flight.connect(f"grpc+tcp://127.0.0.1:{srv.port}") as c:
            for _ in range(2):
                c.do_get(flight.Ticket(b"all"), options({"x-api-key": creds.reader})).read_all()
            with pytest.raises(flight.FlightUnavailableError, match=r"too many requests for this credential; "
                                                                    r"retry after \d+ s"):
                c.do_get(flight.Ticket(b"all"), options({"x-api-key": creds.reader})).read_all()
            c.do_get(flight.Ticket(b"all"), options({"x-api-key": creds.admin})).read_all()  # its own bucket
    finally:
        srv.shutdown()


def test_rate_limit_per_address(creds: Creds) -> None:
    srv = start(creds.settings(rate_per_ip=0.2, burst_per_ip=2))
    try:
        with flight.connect(f"grpc+tcp://127.0.0.1:{srv.port}") as c:
            c.do_get(flight.Ticket(b"all"), options({"x-api-key": creds.reader})).read_all()
            c.do_get(flight.Ticket(b"all"), options({"x-api-key": creds.admin})).read_all()
            with pytest.raises(flight.FlightUnavailableError, match="too many requests from this address"):
                c.do_get(flight.Ticket(b"all"), options({"authorization": f"Bearer {token()}"})).read_all()
    finally:
        srv.shutdown()


def test_tls_with_a_generated_certificate(creds: Creds, tmp_path) -> None:
    tls = generate_self_signed(tmp_path / "tls")
    settings = creds.settings(tls_cert=str(tls.cert), tls_key=str(tls.key))
    srv = start(settings)
    try:
        assert flight_server_options(settings)[1] == "grpc+tls"
        location = f"grpc+tls://127.0.0.1:{srv.port}"
        with flight.connect(location, tls_root_certs=tls.ca_cert.read_bytes()) as c:
            assert c.do_get(flight.Ticket(b"all"), options({"x-api-key": creds.reader})).read_all().equals(TABLE)
            with pytest.raises(flight.FlightUnauthenticatedError):
                c.do_get(flight.Ticket(b"all"), options({})).read_all()
        with flight.connect(location) as c, pytest.raises(flight.FlightUnavailableError):  # CA not trusted
            c.do_get(flight.Ticket(b"all"), options({"x-api-key": creds.reader})).read_all()
        with flight.connect(f"grpc+tcp://127.0.0.1:{srv.port}") as c, pytest.raises(flight.FlightUnavailableError):
            c.do_get(flight.Ticket(b"all"), options({"x-api-key": creds.reader})).read_all()
    finally:
        srv.shutdown()


def test_expiry_is_checked_per_call(creds: Creds) -> None:
    """A key that expires while a client is connected stops working on its next call."""
    record, secret = creds.store.create(["reader"], expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
    srv = start(creds.settings())
    try:
        with flight.connect(f"grpc+tcp://127.0.0.1:{srv.port}") as c:
            c.do_get(flight.Ticket(b"all"), options({"x-api-key": secret})).read_all()
            time.sleep((record.expires_at - dt.datetime.now(dt.UTC)).total_seconds() + 0.05)
            with pytest.raises(flight.FlightUnauthenticatedError, match="API key expired"):
                c.do_get(flight.Ticket(b"all"), options({"x-api-key": secret})).read_all()
    finally:
        srv.shutdown()


def test_handlers_refuse_when_the_middleware_is_missing(creds: Creds) -> None:
    """Fail closed: a server started without the auth middleware answers nothing."""
    srv = TransfersServer("grpc+tcp://127.0.0.1:0")
    try:
        with flight.connect(f"grpc+tcp://127.0.0.1:{srv.port}") as c, \
                pytest.raises(flight.FlightUnauthenticatedError, match="without its auth middleware"):
            c.do_get(flight.Ticket(b"all"), options({"x-api-key": creds.admin})).read_all()
    finally:
        srv.shutdown()
