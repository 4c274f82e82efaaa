"""`manage.py sipedge_config`: the SIP edge's configuration from the settings, checked
value by value, and accepted by Kamailio itself."""

import stat
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from portal.testing import require_program

TOKEN = "ntk_" + "a1B2" * 8


@pytest.fixture
def edge_env(monkeypatch, settings):
    monkeypatch.setenv("SIP_EDGE_TOKEN", TOKEN)
    settings.SIP_EDGE_TRUSTED_SCSCFS = ["10.20.0.5", "10.30.0.0/24"]
    return settings


def test_it_writes_the_script_and_the_defs_readable_by_its_owner_only(edge_env, tmp_path):
    call_command("sipedge_config", out=str(tmp_path))
    defs = (tmp_path / "edge.defs").read_text()
    assert '#!substdef "!EDGE_TRUSTED_SCSCF!10.20.0.5/32,10.30.0.0/24!g"' in defs
    assert f'#!substdef "!EDGE_TOKEN!{TOKEN}!g"' in defs
    assert "listen=udp:127.0.0.1:5070" in defs and "listen=tcp:127.0.0.1:5071" in defs
    assert stat.S_IMODE((tmp_path / "edge.defs").stat().st_mode) == 0o600
    assert (tmp_path / "kamailio.cfg").read_text().startswith("#!KAMAILIO")


@pytest.mark.parametrize(("budget", "asks"), [(200, True), (0, False)])
def test_the_edge_asks_the_sti_service_within_the_budget_unless_it_is_0(
    edge_env, tmp_path, budget, asks
):
    edge_env.SIP_EDGE_STI_BUDGET_MS = budget
    call_command("sipedge_config", out=str(tmp_path))
    defs = (tmp_path / "edge.defs").read_text()
    assert f'#!substdef "!EDGE_STI_BUDGET_MS!{budget}!g"' in defs
    assert f'#!substdef "!EDGE_STI_SCRIPT!{tmp_path.resolve() / "sti.py"}!g"' in defs
    assert ("#!define WITH_STI" in defs) is asks
    assert (tmp_path / "sti.py").read_text() == (
        Path(settings.BASE_DIR) / "sipedge" / "sti.py"
    ).read_text()


def test_kamailio_accepts_what_it_writes(edge_env, tmp_path):
    kamailio = require_program("kamailio")
    call_command("sipedge_config", out=str(tmp_path))
    check = subprocess.run(
        [kamailio, "-c", "-f", str(tmp_path / "kamailio.cfg")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr[-2000:]


@pytest.mark.parametrize(
    ("setting", "value", "complaint"),
    [
        ("SIP_EDGE_TRUSTED_SCSCFS", ["scscf.example.net"], "SIP_EDGE_TRUSTED_SCSCFS"),
        ("SIP_EDGE_TRUSTED_SCSCFS", [], "names no S-CSCF"),
        ("SIP_EDGE_LISTEN", ['udp:127.0.0.1:5070"\nloadmodule "x.so'], "SIP_EDGE_LISTEN"),
        ("SIP_EDGE_AS_URI", "sip:as@edge!g\n#!substdef", "SIP_EDGE_AS_URI"),
        ("SIP_EDGE_PORTAL_URL", "http://portal$(shell)", "SIP_EDGE_PORTAL_URL"),
        ("SIP_EDGE_RPC_URL", "http://127.0.0.1:5071/", "SIP_EDGE_RPC_URL"),
        ("SIP_EDGE_SUBSCRIBE_EXPIRES", 5, "SIP_EDGE_SUBSCRIBE_EXPIRES"),
        ("SIP_EDGE_STI_BUDGET_MS", -1, "SIP_EDGE_STI_BUDGET_MS"),
        ("SIP_EDGE_STI_BUDGET_MS", 60_000, "SIP_EDGE_STI_BUDGET_MS"),
    ],
)
def test_a_value_that_could_add_script_or_is_wrong_is_refused(
    edge_env, tmp_path, setting, value, complaint
):
    setattr(edge_env, setting, value)
    with pytest.raises(CommandError, match=complaint):
        call_command("sipedge_config", out=str(tmp_path))
    assert not (tmp_path / "edge.defs").exists()


@pytest.mark.parametrize(
    "token", ["", "ntk_short", 'ntk_aaaaaaaaaaaaaaaaaaaa"!g', "api_" + "a" * 32]
)
def test_the_credential_must_be_a_network_clients(monkeypatch, tmp_path, token):
    monkeypatch.setenv("SIP_EDGE_TOKEN", token)
    with pytest.raises(CommandError, match="SIP_EDGE_TOKEN"):
        call_command("sipedge_config", out=str(tmp_path))


def test_the_demo_credential_is_for_development_only(settings, tmp_path):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DJANGO_DEBUG"):
        call_command("sipedge_config", out=str(tmp_path), demo_token=True)
