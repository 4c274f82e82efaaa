"""`make lab` as a user runs it in a terminal: Ctrl-C there stops every process it
started (the portal, its worker, PyHSS and its Redis, the S-CSCF, the SIP edge), and
leaves none of the lab's ports taken."""

import contextlib
import os
import pty
import select
import socket
import time
from dataclasses import astuple

import pytest

from portal import lab
from portal.management.commands.lab import PORTS, lab_folder
from portal.testing import peers_dir, require_program, wait_for, worker_database_url
from portal.tests.test_make_run import ROOT, free_port, users_environment

pytestmark = [pytest.mark.peer, pytest.mark.django_db(transaction=True)]

CTRL_C = b"\x03"  # what the terminal turns into SIGINT for the foreground processes


def port_free(port: int) -> bool:
    """Nothing listens on the port, over TCP or UDP (the SIP ports are UDP)."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


class Terminal:
    """A command run in a pseudo-terminal, as in a user's shell."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the command, as the terminal's foreground job
            os.chdir(ROOT)
            os.execvpe(argv[0], argv, env)  # noqa: S606 - a fixed argv, as a shell would run it
        self.output = b""

    def read_until(self, text: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if time.monotonic() > deadline:
                raise AssertionError(f"not seen within {timeout}s: {text!r}\n{self.tail}")
            if select.select([self.fd], [], [], 1)[0]:
                try:
                    self.output += os.read(self.fd, 65536)
                except OSError:  # the command ended and closed the terminal
                    raise AssertionError(f"ended before {text!r}:\n{self.tail}") from None

    def exit_status(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if select.select([self.fd], [], [], 0.5)[0]:
                with contextlib.suppress(OSError):
                    self.output += os.read(self.fd, 65536)
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self._drain()
                return os.waitstatus_to_exitcode(status)
        return None

    def _drain(self) -> None:
        """What the command wrote before it ended and was not read yet."""
        while select.select([self.fd], [], [], 0.2)[0]:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.output += chunk

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, 9)

    @property
    def tail(self) -> str:
        return self.output.decode(errors="replace")[-3000:]


def test_ctrl_c_in_the_terminal_stops_everything_make_lab_started():
    peers_dir()
    for program in ("kamailio", "redis-server"):
        require_program(program)
    port = free_port()
    ports = [port, *astuple(PORTS)]
    busy = [p for p in ports if not port_free(p)]
    assert not busy, f"the lab's ports are taken before it starts: {busy}"
    env = users_environment()
    env.update(DATABASE_URL=worker_database_url(), TERM="dumb")
    terminal = Terminal(["make", "--no-print-directory", "lab", f"LAB_PORT={port}"], env)
    try:
        terminal.read_until(b"Ctrl-C stops everything", timeout=300)
        os.write(terminal.fd, CTRL_C)
        status = terminal.exit_status(timeout=60)
    finally:
        terminal.kill()
        # What `make lab-stop` would stop: a process of the lab that outlived it.
        outlived = lab.stop_leftovers(lab_folder())
    assert status is not None, f"make lab still runs a minute after Ctrl-C:\n{terminal.tail}"
    assert b"The lab stopped." in terminal.output, terminal.tail
    assert outlived == [], f"processes of the lab outlived it: {outlived}\n{terminal.tail}"
    wait_for(lambda: all(port_free(p) for p in ports), timeout=10)
