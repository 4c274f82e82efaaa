"""Load generators: wrk (Debian's package) with a Lua script for fixed-duration runs,
and a small asyncio HTTP/1.1 client for runs of an exact set of requests (the
registration storm), both on loopback only."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

LUA = r"""
wrk.method = "%(method)s"
%(headers)s
local bodies = {%(bodies)s}
local prepared = {}
local position = 0
expected = %(expected)d

function init(args)
  if #bodies == 0 then
    prepared[1] = wrk.format()
  else
    for i, body in ipairs(bodies) do prepared[i] = wrk.format(nil, nil, nil, body) end
  end
  position = math.random(#prepared) - 1
end

function request()
  position = position %% #prepared + 1
  return prepared[position]
end

bad = 0
last_bad = 0
function response(status, headers, body)
  if status ~= expected then
    bad = bad + 1
    last_bad = status
  end
end

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local bad_total, last = 0, 0
  for _, thread in ipairs(threads) do
    bad_total = bad_total + thread:get("bad")
    if thread:get("last_bad") ~= 0 then last = thread:get("last_bad") end
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "p50": %%d, "p95": %%d, "p99": %%d, ' ..
    '"max": %%d, "mean": %%.1f, "connect": %%d, "read": %%d, "write": %%d, "timeout": %%d, ' ..
    '"bad": %%d, "last_bad": %%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.timeout,
    bad_total, last))
end
"""


def _lua_string(text: str) -> str:
    level = 1
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    bad: int
    last_bad: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk(
    url: str,
    *,
    connections: int,
    seconds: float,
    var_dir: Path,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    bodies: list[str] | None = None,
    expected: int = 200,
    timeout: float = 10,
) -> WrkResult:
    """Run wrk against ``url`` for ``seconds`` with ``connections`` clients (one or two
    threads), rotating through ``bodies``; every answer that is not ``expected`` counts
    as bad."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (the Makefile's bench target installs it)")
    header_lines = "\n".join(
        f"wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in (headers or {}).items()
    )
    script = var_dir / f"wrk-{time.monotonic_ns()}.lua"
    script.write_text(
        LUA
        % {
            "method": method,
            "headers": header_lines,
            "bodies": ", ".join(_lua_string(b) for b in (bodies or [])),
            "expected": expected,
        }
    )
    threads = 1 if connections == 1 else 2
    argv = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds:.0f}s",
        "--timeout",
        f"{timeout:.0f}s",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    script.unlink(missing_ok=True)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed:\n{out.stdout}\n{out.stderr}")
    data = json.loads(line.removeprefix("WRKJSON "))
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50"] / 1000,
        p95_ms=data["p95"] / 1000,
        p99_ms=data["p99"] / 1000,
        max_ms=data["max"] / 1000,
        errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
        bad=data["bad"],
        last_bad=data["last_bad"],
    )


# --- An exact set of requests -----------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: bytes
    seconds: float


@dataclass
class Run:
    answers: list[Answer] = field(default_factory=list)
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """An HTTP/1.1 answer: its status, body, and whether the server closes."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed")
    status = int(status_line.split()[1])
    length, close = 0, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "connection" and "close" in value.lower():
            close = True
    payload = await reader.readexactly(length) if length else b""
    return status, payload, close


async def _client(
    host, port, path, headers, queue: asyncio.Queue, run: Run, results: list, answered: dict
):
    reader = writer = None
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    while True:
        try:
            index, body, before = queue.get_nowait()
        except asyncio.QueueEmpty:
            break
        if before is not None:
            await answered[before].wait()
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{head}"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        for attempt in (1, 2):
            try:
                if reader is None or writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                started = time.perf_counter()
                writer.write(request)
                status, payload, close = await _answer(reader)
                results[index] = Answer(status, payload, time.perf_counter() - started)
                if index in answered:
                    answered[index].set()
                if close:
                    writer.close()
                    reader = writer = None
                break
            except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
                if writer is not None:
                    writer.close()
                reader = writer = None
                if attempt == 2:
                    run.errors.append(f"request {index}: {exc!r}")
                    if index in answered:
                        answered[index].set()
    if writer is not None:
        writer.close()


def post_all(
    base_url: str,
    path: str,
    bodies: list[bytes],
    *,
    clients: int,
    headers: dict[str, str],
    after: list[int | None] | None = None,
) -> Run:
    """POST every body once, ``clients`` at a time over keep-alive connections (a
    connection the server closes is reopened); returns every answer with its latency.
    ``after[i]``, when given, is a body that must be answered before body ``i`` is sent
    (a notifier sends a subscription's next NOTIFY once the last one is answered)."""
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    after = after or [None] * len(bodies)

    async def main() -> Run:
        queue: asyncio.Queue = asyncio.Queue()
        for index, body in enumerate(bodies):
            queue.put_nowait((index, body, after[index]))
        answered = {before: asyncio.Event() for before in after if before is not None}
        run = Run()
        results: list = [None] * len(bodies)
        started = time.perf_counter()
        await asyncio.gather(
            *(
                _client(parts.hostname, parts.port, path, headers, queue, run, results, answered)
                for _ in range(clients)
            )
        )
        run.seconds = time.perf_counter() - started
        run.answers = [r for r in results if r is not None]
        return run

    import uvloop  # libuv's loop: the load client shares the machine; it costs less so

    return uvloop.run(main())


# --- At an offered rate ------------------------------------------------------------------


def paced(
    base_url: str,
    path: str,
    *,
    method: str,
    headers: dict[str, str],
    bodies: list[bytes],
    rate: float,
    seconds: float,
) -> Run:
    """Open loop: request ``i`` goes at ``i / rate`` seconds from the start, on a
    connection of its own, whether or not the ones before are answered (as calls reach
    an SBC). Its latency runs from that time, so a server that falls behind is charged
    its queue (no coordinated omission). Bodies go in rotation; GET sends none."""
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())

    def request(body: bytes) -> bytes:
        length = f"Content-Length: {len(body)}\r\n" if method != "GET" else ""
        return (
            f"{method} {path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n{head}"
            f"{length}Connection: close\r\n\r\n"
        ).encode() + body

    prepared = [request(b) for b in bodies or [b""]]
    count = int(rate * seconds)

    async def one(index: int, due: float, run: Run) -> None:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        writer = None
        try:
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
            writer.write(prepared[index % len(prepared)])
            status, payload, _ = await _answer(reader)
            run.answers.append(Answer(status, payload, time.perf_counter() - due))
        except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
            run.errors.append(f"request {index}: {exc!r}")
        finally:
            if writer is not None:
                writer.close()

    async def main() -> Run:
        run = Run()
        start = time.perf_counter() + 0.1
        await asyncio.gather(*(one(i, start + i / rate, run) for i in range(count)))
        run.seconds = time.perf_counter() - start
        return run

    import uvloop

    return uvloop.run(main())


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]
