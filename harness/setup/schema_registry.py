"""Build Apicurio Registry, the local stack's schema registry, into brokerbench's cache.

Apicurio publishes its server on Maven Central only as a library (``apicurio-registry-app``), so
``brokerbench setup`` builds the runnable server itself: a small wrapper Maven project
(``apicurio-registry-pom.xml`` beside this module) depends on the app and runs Quarkus's build.
Quarkus reads ``application.properties`` only from the project it builds, so the app jar's own
copy is put there, with the two lines that make Quarkus index the app jar's classes (its REST
resources, storage, rules). The result, a ``-runner.jar`` and its ``lib/`` (about 130 MB), is
all the cache keeps; the Maven downloads stay in the home's own repository (``m2/``) like
Kafka's.

Confluent's Schema Registry is not on Maven Central and Karapace is not on PyPI; Apicurio 2.4.2
serves the Confluent-compatible API under ``/apis/ccompat/v7`` (docs/schema-registry.md).
"""

import shutil
import zipfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from harness import paths
from harness.setup.prerequisites import JAVA, MAVEN

REGISTRY_VERSION = "2.4.2.Final"
QUARKUS_VERSION = "2.16.4.Final"
"""The Quarkus release Apicurio 2.4.2 is built on."""
CONFIG_INDEX_VERSION = "0.1.10.Final"
"""apicurio-common-app-components-config-index: the BOM's 0.1.18 lacks its -deployment jar."""
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
APP = f"io.apicurio:apicurio-registry-app:{REGISTRY_VERSION}"
RUNNER_JAR = "apicurio-registry-runner.jar"
"""The server's jar in the cached folder (its manifest finds ``lib/`` beside it)."""
MavenRun = Callable[[list[str], str, Path], None]
"""Runs ``(command, what it does, working folder)``; a one-line ``UserError`` on failure."""
_INDEX_APP_JAR = (
    "\n# brokerbench: index the app jar's classes, which Quarkus would otherwise not scan\n"
    "quarkus.index-dependency.registry-app.group-id=io.apicurio\n"
    "quarkus.index-dependency.registry-app.artifact-id=apicurio-registry-app\n"
)


def wrapper_pom() -> str:
    """The wrapper project's POM, from the template shipped in the package."""
    template = resources.files("harness.setup").joinpath("apicurio-registry-pom.xml")
    return (
        template.read_text(encoding="utf-8")
        .replace("{registry_version}", REGISTRY_VERSION)
        .replace("{quarkus_version}", QUARKUS_VERSION)
        .replace("{config_index_version}", CONFIG_INDEX_VERSION)
    )


def app_properties(app_jar: Path) -> str:
    """The app jar's ``application.properties`` plus the lines that index the app jar."""
    with zipfile.ZipFile(app_jar) as jar:
        own = jar.read("application.properties").decode("utf-8")
    return own + _INDEX_APP_JAR


def build(root: Path, run: MavenRun) -> None:
    """Build the server into the empty folder ``root`` (``RUNNER_JAR`` and ``lib/``)."""
    JAVA.require()
    mvn = MAVEN.require()
    project = root / "project"
    resources_dir = project / "src" / "main" / "resources"
    resources_dir.mkdir(parents=True)
    (project / "pom.xml").write_text(wrapper_pom(), encoding="utf-8")
    repository = f"-Dmaven.repo.local={paths.home() / 'm2'}"
    app_dir = project / "app"
    run(
        [
            mvn, "-B", "-q", "-f", str(project / "pom.xml"), repository,
            f"{DEPENDENCY_PLUGIN}:copy", f"-Dartifact={APP}", f"-DoutputDirectory={app_dir}",
        ],
        "fetching Apicurio Registry through Maven",
        root,
    )  # fmt: skip
    (app_jar,) = app_dir.glob("*.jar")
    (resources_dir / "application.properties").write_text(app_properties(app_jar), encoding="utf-8")
    run(
        [mvn, "-B", "-q", "-f", str(project / "pom.xml"), repository, "package"],
        "building Apicurio Registry with Maven and Quarkus",
        root,
    )
    runners = list((project / "target").glob("*-runner.jar"))
    if len(runners) != 1 or not (project / "target" / "lib").is_dir():
        raise RuntimeError(
            "the Apicurio Registry build finished without a runnable server (a -runner.jar "
            "and lib/): report it, with `mvn -v`, to brokerbench's maintainers"
        )
    runners[0].rename(root / RUNNER_JAR)
    (project / "target" / "lib").rename(root / "lib")
    shutil.rmtree(project)
