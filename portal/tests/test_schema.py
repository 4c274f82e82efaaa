from django.core.management import call_command


def test_the_openapi_schema_validates_without_warnings(tmp_path):
    # Fails on any drf-spectacular warning, so the schema never silently degrades.
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml")
    )
    assert (tmp_path / "schema.yml").read_text().startswith("openapi: 3")
