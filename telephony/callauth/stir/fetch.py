"""Other carriers' certificates: the x5u of a PASSporT that is not in our repository,
fetched under a strict policy (docs/security.md, "x5u fetch policy").

The only network I/O of call authentication. An x5u is chosen by whoever sent the call,
so the fetch must not become a way to make the portal reach what it should not:

- HTTPS only (a lab setting allows http, and then only to a loopback address);
- the host name is resolved here and every address it has must be public, or inside a
  network the operator allows (STIR_X5U_ALLOWED_NETWORKS); the connection goes to the
  address that was checked, so a second DNS answer cannot point elsewhere;
- a hard wall-clock deadline over the whole fetch, DNS included (a timer shuts the socket
  down when it passes, so a repository that trickles cannot hold a worker), a size cap,
  no content encodings, redirects only within the same scheme, host and port;
- answers, and failures too, are kept in the shared cache by URL: the call path fetches
  one URL at most once a minute, whatever Cache-Control says, and at most once a day.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import math
import os
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import urllib3
import urllib3.connection
from django.conf import settings
from django.core.cache import cache

from kernel.observability import logs_failed_calls
from telephony.callauth.stir import certificates

MAX_BYTES = certificates.MAX_BUNDLE_BYTES
MAX_URL_LENGTH = 2048
MAX_REDIRECTS = 3
MIN_CACHE_SECONDS = 60  # the call path must not fetch one certificate twice a minute
MAX_CACHE_SECONDS = 24 * 3600
FAILURE_CACHE_SECONDS = 60
_RESOLVERS = 4  # threads per process that may wait on a slow DNS server at once
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchError(Exception):
    """The certificate at an x5u cannot be had (the reason fits a call record)."""


class OutOfTime(FetchError):
    """The fetch's deadline passed first."""

    def __init__(self):
        super().__init__("the repository did not answer in time")


def certificate_chain(url: str, deadline: float | None = None) -> str:
    """The PEM bundle at `url`, from the shared cache or fetched. Concurrent calls naming
    one new URL (in any process) wait for the one that fetches it. `deadline` (a
    time.monotonic() value) is the caller's, when several fetches share one budget;
    a fetch never has more than STIR_X5U_TIMEOUT_SECONDS."""
    own = time.monotonic() + settings.STIR_X5U_TIMEOUT_SECONDS
    # A fetch cut short by the caller's budget says nothing about the repository.
    cut_short = deadline is not None and deadline < own - 0.05
    deadline = own if deadline is None else min(deadline, own)
    key = "stir:x5u:" + hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()
    cached = cache.get(key)
    # The fetch ends by its deadline, so the lock lapses only after any fetch is over.
    lock_seconds = math.ceil(settings.STIR_X5U_TIMEOUT_SECONDS) + 1
    if cached is None and not cache.add(f"{key}:fetching", 1, lock_seconds):
        cached = _wait_for(key, deadline)
    if cached is not None:
        fetched, value = cached
        if fetched:
            return value
        raise FetchError(value)
    try:
        try:
            pem, seconds = fetch(url, deadline)
        except FetchError as exc:
            if not (cut_short and isinstance(exc, OutOfTime)):
                cache.set(key, (False, str(exc)), FAILURE_CACHE_SECONDS)
            raise
        cache.set(key, (True, pem), seconds)
        return pem
    finally:
        cache.delete(f"{key}:fetching")  # after the answer is in the cache


def _wait_for(key: str, deadline: float):
    """What another process is fetching, once it is there; None when it is not there by
    this caller's deadline (that process died, say), and this one tries itself."""
    while time.monotonic() < deadline:
        time.sleep(0.05)
        cached = cache.get(key)
        if cached is not None:
            return cached
    return None


@logs_failed_calls("x5u certificate repository")
def fetch(url: str, deadline: float | None = None) -> tuple[str, int]:
    """(PEM bundle, seconds it may be cached) from the repository at `url`, by
    `deadline` (time.monotonic(); STIR_X5U_TIMEOUT_SECONDS from now when not given)."""
    if deadline is None:
        deadline = time.monotonic() + settings.STIR_X5U_TIMEOUT_SECONDS
    target = _Target.parse(url)
    for _ in range(MAX_REDIRECTS + 1):
        if time.monotonic() >= deadline:
            raise OutOfTime
        status, headers, body = _get(target, deadline)
        if status in _REDIRECTS:
            following = _Target.parse(urljoin(target.url, headers.get("Location", "")))
            if following.origin != target.origin:
                raise FetchError("the repository redirects to another host")
            target = following
            continue
        if status != 200:
            raise FetchError(f"the repository answered HTTP {status}")
        try:
            pem = body.decode("ascii")
            certificates.load_certificates(body)
        except (UnicodeDecodeError, certificates.CertificateError) as exc:
            raise FetchError("the repository's answer is not a PEM certificate bundle") from exc
        return pem, _cache_seconds(headers.get("Cache-Control", ""))
    raise FetchError("the repository redirects too often")


@dataclass(frozen=True)
class _Target:
    url: str
    scheme: str
    host: str  # as written in the URL (for Host, SNI and the certificate's name)
    port: int
    path: str  # path and query

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host.lower(), self.port

    @classmethod
    def parse(cls, url: str) -> _Target:
        if not isinstance(url, str) or len(url) > MAX_URL_LENGTH or not url.isprintable():
            raise FetchError("the x5u is not a usable URL")
        try:
            parts = urlsplit(url)
            port = parts.port
            host = parts.hostname or ""
            host.encode("idna")
        except (ValueError, UnicodeError) as exc:
            raise FetchError("the x5u is not a usable URL") from exc
        allowed = ("https", "http") if settings.STIR_X5U_ALLOW_HTTP else ("https",)
        if parts.scheme not in allowed:
            raise FetchError(f"the x5u must be an {' or '.join(allowed)} URL")
        if not host or parts.username is not None or parts.password is not None:
            raise FetchError("the x5u must name a host and no credentials")
        default = 443 if parts.scheme == "https" else 80
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(url, parts.scheme, host, port or default, path)


_resolver: tuple[int, ThreadPoolExecutor] | None = None


def _resolve(target: _Target, deadline: float) -> list:
    """getaddrinfo by the deadline. The system resolver has timeouts of its own (5 s and
    more per server), so it runs in a small pool: a late answer is left to its thread,
    and a DNS server that never answers holds at most _RESOLVERS threads, not workers."""
    global _resolver
    if _resolver is None or _resolver[0] != os.getpid():  # threads do not survive a fork
        _resolver = (os.getpid(), ThreadPoolExecutor(_RESOLVERS, thread_name_prefix="x5u-dns"))
    answer = _resolver[1].submit(
        socket.getaddrinfo, target.host, target.port, type=socket.SOCK_STREAM
    )
    try:
        return answer.result(timeout=max(0.0, deadline - time.monotonic()))
    except FutureTimeout as exc:
        answer.cancel()
        raise OutOfTime from exc


def _address(target: _Target, deadline: float) -> Address:
    """The address to connect to, after checking every address the host resolves to."""
    try:
        infos = _resolve(target, deadline)
    except (OSError, UnicodeError) as exc:
        raise FetchError(f"the x5u's host {target.host[:80]} does not resolve") from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        raise FetchError(f"the x5u's host {target.host[:80]} does not resolve")
    networks = [ipaddress.ip_network(n, strict=False) for n in settings.STIR_X5U_ALLOWED_NETWORKS]
    for address in addresses:
        plain = getattr(address, "ipv4_mapped", None) or address
        if not (plain.is_global or any(plain in network for network in networks)):
            raise FetchError("the x5u points to a private or reserved address")
        if target.scheme == "http" and not plain.is_loopback:
            raise FetchError("an http x5u is fetched from a loopback address only")
    return addresses[0]


class _Watchdog:
    """Shuts the fetch's connection down when its deadline passes, whatever urllib3 is
    waiting for then (TLS handshake, headers, body): a timeout per socket read alone lets
    a repository that sends a byte now and then hold a worker for as long as it likes."""

    def __init__(self, deadline: float):
        self.fired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        # A duplicate: shutting it down ends the connection, and it stays open until
        # stop(), so its descriptor can never be another socket's by then.
        with self._lock:
            self._sockets.append(sock.dup())
            if self.fired:
                self._shut_down()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            self._shut_down()

    def _shut_down(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):  # already closed by the other side
                sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


class _Watched(urllib3.connection.HTTPConnection):
    """A connection that hands its socket to the fetch's watchdog as soon as it exists."""

    def __init__(self, *args, watchdog: _Watchdog, **kwargs):
        super().__init__(*args, **kwargs)
        self.watchdog = watchdog

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        self.watchdog.watch(sock)
        return sock


class _WatchedHTTPS(_Watched, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _Watched


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPS


def _get(target: _Target, deadline: float) -> tuple[int, dict[str, str], bytes]:
    address = _address(target, deadline)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise OutOfTime
    timeout = urllib3.Timeout(connect=remaining, read=remaining)
    watchdog = _Watchdog(deadline)
    # Connect to the checked address; name the host in Host, SNI and the TLS check.
    if target.scheme == "https":
        pool: urllib3.HTTPConnectionPool = _HTTPSPool(
            str(address),
            target.port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            server_hostname=target.host,
            assert_hostname=target.host,
            watchdog=watchdog,
        )
    else:
        pool = _HTTPPool(
            str(address), target.port, timeout=timeout, retries=False, maxsize=1, watchdog=watchdog
        )
    host_header = target.host if ":" not in target.host else f"[{target.host}]"
    default_port = 443 if target.scheme == "https" else 80
    if target.port != default_port:
        host_header += f":{target.port}"
    try:
        response = pool.urlopen(
            "GET",
            target.path,
            headers={
                "Host": host_header,
                "Accept": "application/pem-certificate-chain, application/x-pem-file, */*",
                "Accept-Encoding": "identity",
                "User-Agent": "enterprise-ims-portal-sti-vs",
            },
            redirect=False,
            retries=False,
            preload_content=False,
            decode_content=False,
        )
        try:
            headers = {name.title(): value for name, value in response.headers.items()}
            if response.status in _REDIRECTS:
                return response.status, headers, b""
            if headers.get("Content-Encoding", "identity").lower() != "identity":
                raise FetchError("the repository sent an encoded answer")
            declared = headers.get("Content-Length", "0")
            if not (declared.isascii() and declared.isdigit()):
                raise FetchError("the repository's answer has a malformed Content-Length")
            if int(declared) > MAX_BYTES:
                raise FetchError(f"the repository's answer is over {MAX_BYTES // 1024} KiB")
            body = bytearray()
            while chunk := response.read(8192):
                body += chunk
                if len(body) > MAX_BYTES:
                    raise FetchError(f"the repository's answer is over {MAX_BYTES // 1024} KiB")
            if watchdog.fired:  # the body may have ended only because the socket was shut
                raise OutOfTime
            return response.status, headers, bytes(body)
        finally:
            response.release_conn()
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        if watchdog.fired or isinstance(exc, urllib3.exceptions.TimeoutError):
            raise OutOfTime from exc
        raise FetchError(f"the repository cannot be reached ({type(exc).__name__})") from exc
    finally:
        pool.close()
        watchdog.stop()


def _cache_seconds(cache_control: str) -> int:
    """How long to keep an answer: the repository's max-age (or the configured TTL when
    it names none), never under a minute, never over a day."""
    directives = cache_control.lower()
    match = _MAX_AGE.search(directives)
    seconds = int(match.group(1)) if match else settings.STIR_X5U_CACHE_SECONDS
    if "no-store" in directives or "no-cache" in directives:
        seconds = 0
    return min(max(seconds, MIN_CACHE_SECONDS), MAX_CACHE_SECONDS)
