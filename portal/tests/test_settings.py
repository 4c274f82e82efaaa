"""Production mode refuses unsafe settings; with real values, check --deploy is clean."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "k3y-" + "x8Z!q2vN0pLr7sTw5yBc9dFg1hJk4mQe6uAi3oXz8" + "Wn2Rt7Ys"
MMTEL_REALM = "https://ims.mnc262.mcc001.3gppnetwork.org"  # an operator's own, not the default
# Any Redis URL: the settings and `check` do not connect to it.
SHARED_CACHE = "redis://127.0.0.1:6379/15"


def manage(*args, env_overrides):
    """manage.py in a fresh process with none of our DJANGO_*, ALLOWED_HOSTS, CACHE_URL."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "ALLOWED_HOSTS", "CACHE_URL"))
    }
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def production_env(tmp_path, **changes) -> dict:
    """Everything production needs; a change of None leaves that variable out."""
    env = {
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": GOOD_KEY,
        "ALLOWED_HOSTS": "portal.example",
        "OIDC_RSA_PRIVATE_KEY_FILE": oidc_key_file(tmp_path),
        "OIDC_RESOURCE_SERVERS": MMTEL_REALM,
        "PORTAL_BASE_URL": "https://portal.example",
        "CACHE_URL": SHARED_CACHE,
    }
    env.update(changes)
    return {name: value for name, value in env.items() if value is not None}


def test_debug_is_off_unless_set():
    result = manage("check", env_overrides={})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr
    assert manage("check", env_overrides={"DJANGO_DEBUG": "true"}).returncode == 0


def test_production_refuses_to_start_without_a_shared_cache(tmp_path):
    result = manage("check", env_overrides=production_env(tmp_path, CACHE_URL=None))
    assert result.returncode != 0
    assert "CACHE_URL must be set" in result.stderr


def test_the_bench_data_command_ships_only_with_the_bench_settings():
    product = manage("help", "bench_data", env_overrides={"DJANGO_DEBUG": "true"})
    assert product.returncode != 0
    assert "Unknown command: 'bench_data'" in product.stderr
    bench = manage(
        "help",
        "bench_data",
        env_overrides={"DJANGO_DEBUG": "true", "DJANGO_SETTINGS_MODULE": "bench.settings"},
    )
    assert bench.returncode == 0, bench.stderr
    assert "--employees" in bench.stdout


def test_production_refuses_to_start_without_a_real_secret_key():
    result = manage(
        "check", env_overrides={"DJANGO_DEBUG": "false", "ALLOWED_HOSTS": "portal.example"}
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_production_refuses_to_start_without_allowed_hosts():
    result = manage("check", env_overrides={"DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": GOOD_KEY})
    assert result.returncode != 0
    assert "ALLOWED_HOSTS must be set" in result.stderr


def oidc_key_file(tmp_path) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "oidc.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(path)


def test_check_deploy_is_clean_with_production_values(tmp_path):
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env_overrides=production_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_an_oidc_signing_key(tmp_path):
    result = manage("check", env_overrides=production_env(tmp_path, OIDC_RSA_PRIVATE_KEY_FILE=None))
    assert result.returncode != 0
    assert "OIDC_RSA_PRIVATE_KEY_FILE must be set" in result.stderr


@pytest.mark.parametrize(
    ("resource_servers", "says"),
    [
        ("", "OIDC_RESOURCE_SERVERS must be set"),  # the test network's realm is no default
        (f"{MMTEL_REALM},http://mcptt.example", "'http://mcptt.example' is not an https URI"),
        (f"{MMTEL_REALM}#realm", "is not an https URI"),
    ],
)
def test_production_refuses_to_start_without_its_own_token_audience(
    tmp_path, resource_servers, says
):
    result = manage(
        "check", env_overrides=production_env(tmp_path, OIDC_RESOURCE_SERVERS=resource_servers)
    )
    assert result.returncode != 0
    assert says in result.stderr


def test_a_malformed_boolean_is_refused_rather_than_guessed():
    result = manage("check", env_overrides={"DJANGO_DEBUG": "maybe"})
    assert result.returncode != 0
    assert "DJANGO_DEBUG must be a boolean" in result.stderr


def database_setting(expression: str, **env) -> str:
    """What ``expression`` of the database settings prints in a process with ``env``."""
    show = f"from django.db import connection; print(connection.settings_dict{expression})"
    result = manage(
        "shell", "--no-imports", "-c", show, env_overrides={"DJANGO_DEBUG": "true", **env}
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


BEHIND_PGBOUNCER = {
    "DATABASE_URL": "postgres://portal@127.0.0.1:6432/portal",
    "DATABASE_TRANSACTION_POOLING": "true",
}


def test_transaction_pooling_turns_server_side_cursors_off():
    cursors = "['DISABLE_SERVER_SIDE_CURSORS']"
    assert database_setting(cursors, **BEHIND_PGBOUNCER) == "True"
    assert database_setting(cursors, DATABASE_URL="postgres://portal@127.0.0.1/portal") == "False"


def test_postgresql_connections_run_without_jit_and_keep_the_urls_own_options():
    options = "['OPTIONS'].get('options')"
    url = "postgres://portal@127.0.0.1/portal?options=-c%20statement_timeout%3D5000"
    assert database_setting(options, DATABASE_URL=url) == "-c statement_timeout=5000 -c jit=off"
    assert database_setting(options, **BEHIND_PGBOUNCER) == "None"  # PgBouncer refuses it


@pytest.mark.django_db
def test_the_server_sees_jit_off_on_the_portals_connection():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"


def test_a_mistyped_rate_limit_stops_the_start():
    result = manage("check", env_overrides={"DJANGO_DEBUG": "true", "API_RATE_LIMIT": "lots"})
    assert result.returncode != 0
    assert "'lots' is not a rate such as 600/minute" in result.stderr


def test_an_unknown_log_format_is_refused():
    result = manage("check", env_overrides={"DJANGO_DEBUG": "true", "LOG_FORMAT": "xml"})
    assert result.returncode != 0
    assert "LOG_FORMAT must be 'json' or 'plain'" in result.stderr


def test_a_missing_metrics_directory_stops_the_start(tmp_path):
    missing = str(tmp_path / "nowhere")
    env = {"DJANGO_DEBUG": "true", "PROMETHEUS_MULTIPROC_DIR": missing}
    result = manage("check", env_overrides=env)
    assert result.returncode != 0
    assert "PROMETHEUS_MULTIPROC_DIR must name an existing directory" in result.stderr
    assert (
        manage("check", env_overrides={**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}).returncode
        == 0
    )


def test_a_worker_metrics_port_needs_the_shared_directory():
    result = manage("check", env_overrides={"DJANGO_DEBUG": "true", "METRICS_WORKER_PORT": "9808"})
    assert result.returncode != 0
    assert "METRICS_WORKER_PORT needs PROMETHEUS_MULTIPROC_DIR" in result.stderr


def test_production_refuses_the_lab_mode_that_shows_sim_keys(tmp_path):
    result = manage("check", env_overrides=production_env(tmp_path, LAB_MODE="true"))
    assert result.returncode != 0
    assert "LAB_MODE only runs with DJANGO_DEBUG on" in result.stderr
    assert manage("check", env_overrides=production_env(tmp_path)).returncode == 0


def test_signing_out_at_the_scscf_needs_its_json_rpc_and_its_sip_address():
    """SIGN_OUT_VIA=scscf: the S-CSCF sends itself the de-REGISTER (over its JSON-RPC, to
    its SIP address), so both must be named."""
    env = {"DJANGO_DEBUG": "true", "SIGN_OUT_VIA": "scscf", "SIP_SCSCF_RPC_URL": "http://h/RPC"}
    result = manage("check", env_overrides=env)
    assert result.returncode != 0
    assert "SIGN_OUT_VIA=scscf needs SIP_SCSCF_RPC_URL and SIP_SCSCF_URI" in result.stderr
    assert manage("check", env_overrides={**env, "SIP_SCSCF_URI": "sip:h:6060"}).returncode == 0
