"""A Stellar RPC look-alike serving `getLedgers` (and getHealth, getNetwork, getLatestLedger)
over real HTTP from ledgers held in memory: for tests, `obsrvr-ray rpc serve` over a lake, and
the sandbox's feed of generated ledgers (obsrvr_sandbox.feed).

It follows stellar-rpc's wire format: by-name params, JSON-RPC errors with HTTP 200, page
limit 50 by default and 200 at most, cursor = last sequence returned, `ledgerCloseTime` as a
string, `headerXdr` a LedgerHeaderHistoryEntry. Faults (HTTP errors, skipped ledgers, a hard
stop) can be switched on to test clients.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from obsrvr_ray.ledger.decode import peek_header

INVALID_REQUEST, INVALID_PARAMS, METHOD_NOT_FOUND, INTERNAL = -32600, -32602, -32601, -32603
DEFAULT_LIMIT, MAX_LIMIT = 50, 200


class RpcFault(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _Stored:
    meta: bytes
    header_entry: bytes
    hash_hex: str
    close_time: int
    protocol: int


class LedgerArchive:
    """Ledgers by sequence; with `retention`, only the newest that many are kept (like a node)."""

    def __init__(self, retention: int | None = None) -> None:
        self.retention = retention
        self._ledgers: dict[int, _Stored] = {}
        self._lock = threading.Lock()

    def add(self, meta: bytes) -> int:
        entry = peek_header(meta)
        header = entry.header
        seq = header.ledger_seq.uint32
        stored = _Stored(
            meta=meta,
            header_entry=entry.to_xdr_bytes(),
            hash_hex=entry.hash.hash.hex(),
            close_time=header.scp_value.close_time.time_point.uint64,
            protocol=header.ledger_version.uint32,
        )
        with self._lock:
            self._ledgers[seq] = stored
            if self.retention is not None:
                for old in sorted(self._ledgers)[: max(0, len(self._ledgers) - self.retention)]:
                    del self._ledgers[old]
        return seq

    def add_all(self, metas: Iterable[bytes]) -> None:
        for meta in metas:
            self.add(meta)

    def window(self) -> tuple[int, int] | None:
        with self._lock:
            if not self._ledgers:
                return None
            return min(self._ledgers), max(self._ledgers)

    def get(self, seq: int) -> _Stored | None:
        with self._lock:
            return self._ledgers.get(seq)


@dataclass
class Faults:
    """Switches for fault tests; all off by default."""

    http_status: int | None = None  # answer every request with this HTTP status
    http_failures_left: int = 0  # ...or only the next N requests
    skip: set[int] = field(default_factory=set)  # ledgers left out of getLedgers pages (a gap)


class _Server(ThreadingHTTPServer):
    """Keeps its open connections, so stopping the server also ends keep-alive connections
    (as a node that goes away does), not only the listening socket."""

    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    def get_request(self):
        conn, addr = super().get_request()
        with self._lock:
            self.connections.add(conn)
        return conn, addr

    def shutdown_request(self, request) -> None:
        with self._lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._lock:
            conns, self.connections = self.connections, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class RpcServer:
    def __init__(self, archive: LedgerArchive, passphrase: str, *, host: str = "127.0.0.1", port: int = 0,
                 max_limit: int = MAX_LIMIT, default_limit: int = DEFAULT_LIMIT) -> None:
        self.archive = archive
        self.passphrase = passphrase
        self.max_limit = max_limit
        self.default_limit = default_limit
        self.faults = Faults()
        self.requests = 0
        self.seen: deque[tuple[float, str, dict]] = deque(maxlen=10_000)  # (Unix time, method, params): for tests
        self._httpd = _Server((host, port), self._handler_class())
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> RpcServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="rpc-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> RpcServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- JSON-RPC methods ---------------------------------------------------------------

    def _window(self) -> tuple[int, int]:
        window = self.archive.window()
        if window is None:
            raise RpcFault(INTERNAL, "DB is empty")
        return window

    def get_ledgers(self, params: dict) -> dict:
        oldest, latest = self._window()
        start = params.get("startLedger") or 0
        pagination = params.get("pagination") or {}
        cursor = pagination.get("cursor") or ""
        limit = pagination.get("limit") or 0
        if not isinstance(start, int) or not isinstance(limit, int) or limit < 0:
            raise RpcFault(INVALID_PARAMS, "invalid parameters")
        fmt = params.get("xdrFormat") or "base64"
        errors = []
        if cursor and start:
            errors.append(f"startLedger ({start}) and cursor ({cursor}) cannot both be set")
        elif not cursor and not oldest <= start <= latest:
            errors.append(
                f"start ledger ({start}) must be between the oldest ledger: {oldest} "
                f"and the latest ledger: {latest} for this rpc instance"
            )
        if limit > self.max_limit:
            errors.append(f"limit must not exceed {self.max_limit}")
        if fmt != "base64":
            errors.append(f"got '{fmt}': expected base64 for optional 'xdrFormat'")
        if errors:
            raise RpcFault(INVALID_REQUEST, "\n".join(errors))
        if cursor:
            try:
                start = int(cursor) + 1
            except ValueError as exc:
                raise RpcFault(INVALID_PARAMS, f'strconv.ParseUint: parsing "{cursor}": invalid syntax') from exc
            if not oldest <= start <= latest:
                raise RpcFault(
                    INVALID_PARAMS,
                    f"cursor ('{cursor}') must be between the oldest ledger: {oldest} "
                    f"and the latest ledger: {latest} for this rpc instance",
                )
        limit = limit or self.default_limit
        ledgers = []
        last = start - 1
        for seq in range(start, min(latest, start + limit - 1) + 1):
            last = seq
            stored = self.archive.get(seq)
            if stored is None or seq in self.faults.skip:
                continue
            ledgers.append(
                {
                    "hash": stored.hash_hex,
                    "sequence": seq,
                    "ledgerCloseTime": str(stored.close_time),
                    "headerXdr": base64.b64encode(stored.header_entry).decode(),
                    "metadataXdr": base64.b64encode(stored.meta).decode(),
                }
            )
        oldest_stored, latest_stored = self.archive.get(oldest), self.archive.get(latest)
        return {
            "ledgers": ledgers,
            "latestLedger": latest,
            "latestLedgerCloseTime": latest_stored.close_time if latest_stored else 0,
            "oldestLedger": oldest,
            "oldestLedgerCloseTime": oldest_stored.close_time if oldest_stored else 0,
            "cursor": str(last),
        }

    def get_health(self, _params: dict) -> dict:
        oldest, latest = self._window()
        return {"status": "healthy", "latestLedger": latest, "oldestLedger": oldest,
                "ledgerRetentionWindow": self.archive.retention or (latest - oldest + 1)}

    def get_network(self, _params: dict) -> dict:
        _, latest = self._window()
        stored = self.archive.get(latest)
        return {"passphrase": self.passphrase, "protocolVersion": stored.protocol if stored else 0}

    def get_latest_ledger(self, _params: dict) -> dict:
        _, latest = self._window()
        stored = self.archive.get(latest)
        assert stored is not None
        return {"id": stored.hash_hex, "protocolVersion": stored.protocol, "sequence": latest,
                "closeTime": str(stored.close_time)}

    METHODS: ClassVar[dict[str, Callable[[RpcServer, dict], dict]]] = {
        "getLedgers": get_ledgers,
        "getHealth": get_health,
        "getNetwork": get_network,
        "getLatestLedger": get_latest_ledger,
    }

    def dispatch(self, request: Any) -> dict:
        req_id = request.get("id") if isinstance(request, dict) else None
        try:
            if not isinstance(request, dict) or request.get("jsonrpc") != "2.0" or "method" not in request:
                raise RpcFault(INVALID_REQUEST, "invalid request")
            method = self.METHODS.get(request["method"])
            if method is None:
                raise RpcFault(METHOD_NOT_FOUND, f"method {request['method']!r} not found")
            params = request.get("params")
            if params is None:
                params = {}
            if not isinstance(params, dict):
                raise RpcFault(INVALID_PARAMS, "params must be an object")
            self.seen.append((time.time(), request["method"], params))
            return {"jsonrpc": "2.0", "id": req_id, "result": method(self, params)}
        except RpcFault as fault:
            return {"jsonrpc": "2.0", "id": req_id, "error": {"code": fault.code, "message": str(fault)}}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: Any) -> None:  # keep test and demo output clean
                return

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                server.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                faults = server.faults
                if faults.http_status is not None or faults.http_failures_left > 0:
                    if faults.http_failures_left > 0:
                        faults.http_failures_left -= 1
                    self._send(faults.http_status or 503, b'{"error":"injected fault"}')
                    return
                try:
                    request = json.loads(raw)
                except ValueError:
                    body = {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}}
                else:
                    body = server.dispatch(request)
                self._send(200, json.dumps(body).encode())

        return Handler
