"""The schema registry's setup, stack wiring and wire format, without starting it (the real
registry's tests are in test_schema_registry.py)."""

import stat
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.schemas.wire import UndecodableError, frame, schema_id_of
from harness.settings import Settings
from harness.setup import schema_registry
from harness.stack.manager import Stack
from harness.stack.provider import open_provider
from tests.stack.cli import brokerbench, environment, isolated_home, one_line_error

MAVEN_NAMESPACE = {"m": "http://maven.apache.org/POM/4.0.0"}


def a_path_with_only_java(tmp_path: Path) -> str:
    """A PATH whose only tool is a stand-in ``java`` that reports version 17."""
    directory = tmp_path / "bin"
    directory.mkdir()
    java = directory / "java"
    java.write_text("#!/bin/sh\necho 'openjdk version \"17.0.9\" 2023-10-17' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    return str(directory)


def test_setup_without_maven_names_the_fix_for_the_registry(tmp_path: Path) -> None:
    home = isolated_home(tmp_path / "home", "kafka", "elasticmq", "toxiproxy")
    env = environment(home, path=a_path_with_only_java(tmp_path))
    line = one_line_error(brokerbench("setup", env=env))
    assert "mvn not found on PATH" in line
    assert "install Apache Maven" in line
    assert not list(home.glob("apicurio-registry-*")), "a failed build left a folder behind"


def test_setup_without_java_names_the_fix_for_the_registry(tmp_path: Path) -> None:
    home = isolated_home(tmp_path / "home", "kafka", "elasticmq", "toxiproxy")
    empty = tmp_path / "empty"
    empty.mkdir()
    line = one_line_error(brokerbench("setup", env=environment(home, path=str(empty))))
    assert "java not found on PATH" in line
    assert "install a JDK" in line


def test_the_wrapper_pom_is_filled_in() -> None:
    pom = schema_registry.wrapper_pom()
    assert "{" not in pom
    root = ET.fromstring(pom)
    versions = {
        element.findtext("m:artifactId", namespaces=MAVEN_NAMESPACE): element.findtext(
            "m:version", namespaces=MAVEN_NAMESPACE
        )
        for element in root.iter(f"{{{MAVEN_NAMESPACE['m']}}}plugin")
    }
    assert versions == {"quarkus-maven-plugin": schema_registry.QUARKUS_VERSION}


def test_the_app_jars_properties_are_kept_and_its_classes_indexed(tmp_path: Path) -> None:
    jar = tmp_path / "app.jar"
    with zipfile.ZipFile(jar, "w") as archive:
        archive.writestr("application.properties", "registry.name=own\n")
    properties = schema_registry.app_properties(jar)
    assert properties.startswith("registry.name=own\n")
    assert "quarkus.index-dependency.registry-app.group-id=io.apicurio\n" in properties
    assert "quarkus.index-dependency.registry-app.artifact-id=apicurio-registry-app\n" in properties


def test_a_plain_up_does_not_start_it_but_up_only_registry_does() -> None:
    settings = Settings()
    assert "registry" not in [service.name for service in Stack(settings).startable]
    assert [service.name for service in Stack(settings, ["registry"]).startable] == ["registry"]


def test_the_containers_provider_refuses_it_naming_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKERBENCH_HOME", str(tmp_path))
    with pytest.raises(UserError, match="runs as a local process only: use --provider local"):
        open_provider(Settings(), ["registry"], "containers")
    assert open_provider(Settings(), ["registry"], "auto").name == "local"


def test_the_wire_format_prefix() -> None:
    payload = frame(258, b"body")
    assert payload == b"\x00\x00\x00\x01\x02body"
    assert schema_id_of(payload) == 258
    with pytest.raises(UndecodableError, match="magic byte 1"):
        schema_id_of(b"\x01\x00\x00\x00\x01body")
    with pytest.raises(UndecodableError, match="shorter"):
        schema_id_of(b"\x00\x00")
