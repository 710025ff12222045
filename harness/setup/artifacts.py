"""The broker runtimes brokerbench installs into its cache, and how each is fetched.

Kafka and ElasticMQ come from Maven Central as jars (a dependency-only POM resolved with the
pinned maven-dependency-plugin), the schema registry (Apicurio) is built from Maven Central with
Quarkus (``schema_registry.py``), toxiproxy is built with ``go install``, and the Pub/Sub
emulator is found where the Google Cloud CLI installed it. Every install goes to a temporary
folder that is renamed into place when complete, so an interrupted setup never leaves a
half-filled cache behind.
"""

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import paths
from harness.errors import UserError
from harness.setup import schema_registry
from harness.setup.prerequisites import GO, MAVEN

KAFKA_VERSION = "4.4.0"
ELASTICMQ_VERSION = "1.7.1"
TOXIPROXY_VERSION = "2.12.0"
LOG4J_VERSION = "2.25.2"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
PUBSUB_JAR_VARIABLE = "BROKERBENCH_PUBSUB_EMULATOR_JAR"
PUBSUB_JAR_GLOBS = (
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/lib/cloud-pubsub-emulator-*-all.jar",
    "/usr/share/google-cloud-sdk/platform/pubsub-emulator/lib/cloud-pubsub-emulator-*-all.jar",
    "/opt/google-cloud-sdk/platform/pubsub-emulator/lib/cloud-pubsub-emulator-*-all.jar",
    "~/google-cloud-sdk/platform/pubsub-emulator/lib/cloud-pubsub-emulator-*-all.jar",
    "/opt/homebrew/share/google-cloud-sdk/platform/pubsub-emulator/lib/"
    "cloud-pubsub-emulator-*-all.jar",
)
PUBSUB_HOW_TO_GET = (
    "install it with `gcloud components install pubsub-emulator` (Debian/Ubuntu: apt-get install "
    f"google-cloud-cli-pubsub-emulator) or set {PUBSUB_JAR_VARIABLE}=/path/to/the/-all.jar"
)

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>brokerbench.local</groupId>
  <artifactId>{artifact}-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencyManagement><dependencies>{managed}</dependencies></dependencyManagement>
  <dependencies>{dependencies}</dependencies>
</project>
"""


def _dependency(coordinates: str, extra: str = "") -> str:
    group, artifact, *version = coordinates.split(":")
    version_tag = f"<version>{version[0]}</version>" if version else ""
    return (
        f"<dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
        f"{version_tag}{extra}</dependency>"
    )


@dataclass(frozen=True)
class Artifact:
    """One cached runtime: where it lives once installed and how to install it."""

    name: str
    version: str
    root: Path
    entry: str
    """What the services use, relative to ``root`` (a lib folder, a binary)."""
    fetch: Callable[[Path], None] | None
    """Fills a fresh folder; None for runtimes brokerbench finds but does not install."""

    @property
    def path(self) -> Path:
        return self.root / self.entry

    @property
    def installed(self) -> bool:
        return self.path.exists()

    def install(self) -> None:
        """Fetch into a temporary folder beside the target, then rename it into place."""
        if self.fetch is None or self.installed:
            return
        self.root.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.root.parent, prefix=".partial-") as partial:
            staging = Path(partial) / "root"
            staging.mkdir()
            self.fetch(staging)
            if self.root.exists():
                shutil.rmtree(self.root)
            staging.rename(self.root)


def _maven_fetch(
    artifact: str, dependencies: list[str], managed: list[str]
) -> Callable[[Path], None]:
    def fetch(root: Path) -> None:
        mvn = MAVEN.require()
        pom = root / "pom.xml"
        pom.write_text(
            _POM.format(
                artifact=artifact,
                managed="".join(
                    _dependency(bom, "<type>pom</type><scope>import</scope>") for bom in managed
                ),
                dependencies="".join(_dependency(item) for item in dependencies),
            ),
            encoding="utf-8",
        )
        command = [
            mvn, "-B", "-q", "-f", str(pom),
            f"-Dmaven.repo.local={paths.home() / 'm2'}",
            f"{DEPENDENCY_PLUGIN}:copy-dependencies",
            f"-DoutputDirectory={root / 'lib'}",
            "-DincludeScope=runtime",
        ]  # fmt: skip
        _run(command, f"fetching {artifact} through Maven", root)

    return fetch


def _go_install(root: Path) -> None:
    go = GO.require()
    env = os.environ | {
        "GOBIN": str(root / "bin"),
        "GOMODCACHE": str(paths.home() / "go" / "mod"),
        "GOFLAGS": "-modcacherw",
    }
    for command, name in (("server", "toxiproxy-server"), ("cli", "toxiproxy-cli")):
        module = f"github.com/Shopify/toxiproxy/v2/cmd/{command}@v{TOXIPROXY_VERSION}"
        version_flag = f"-ldflags=-X github.com/Shopify/toxiproxy/v2.Version={TOXIPROXY_VERSION}"
        _run(
            [go, "install", version_flag, module],
            f"building toxiproxy {command} with go install",
            root,
            env,
        )
        (root / "bin" / command).rename(root / "bin" / name)


def _run(command: list[str], what: str, cwd: Path, env: dict[str, str] | None = None) -> None:
    log = cwd / "install.log"
    with log.open("w", encoding="utf-8") as output:
        completed = subprocess.run(
            command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT, env=env, check=False
        )
    if completed.returncode != 0:
        lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        # Maven's first [ERROR] line says what failed; its last ones only point to its wiki.
        errors = [line for line in lines if line.startswith("[ERROR]")]
        shown = errors[0] if errors else lines[-1] if lines else "no output"
        raise UserError(f"{what} failed (exit {completed.returncode}): {shown[:300]}")


def kafka() -> Artifact:
    return Artifact(
        "kafka",
        KAFKA_VERSION,
        paths.home() / f"kafka-{KAFKA_VERSION}",
        "lib",
        _maven_fetch(
            "kafka",
            [
                f"org.apache.kafka:kafka_2.13:{KAFKA_VERSION}",
                f"org.apache.kafka:kafka-tools:{KAFKA_VERSION}",
                "org.apache.logging.log4j:log4j-core",
                # Kafka's jars are built against SLF4J 1.7, so the 1.x binding is the one it finds.
                "org.apache.logging.log4j:log4j-slf4j-impl",
            ],
            [f"org.apache.logging.log4j:log4j-bom:{LOG4J_VERSION}"],
        ),
    )


def elasticmq() -> Artifact:
    return Artifact(
        "elasticmq",
        ELASTICMQ_VERSION,
        paths.home() / f"elasticmq-{ELASTICMQ_VERSION}",
        "lib",
        _maven_fetch("elasticmq", [f"org.elasticmq:elasticmq-server_2.13:{ELASTICMQ_VERSION}"], []),
    )


def schema_registry_server() -> Artifact:
    """Apicurio Registry, built by its wrapper Maven project (``schema_registry.build``)."""
    version = schema_registry.REGISTRY_VERSION
    return Artifact(
        "registry",
        version,
        paths.home() / f"apicurio-registry-{version}",
        schema_registry.RUNNER_JAR,
        lambda root: schema_registry.build(root, _run),
    )


def toxiproxy() -> Artifact:
    return Artifact(
        "toxiproxy",
        TOXIPROXY_VERSION,
        paths.home() / f"toxiproxy-{TOXIPROXY_VERSION}",
        "bin/toxiproxy-server",
        _go_install,
    )


def find_pubsub_emulator_jar() -> Path | None:
    """The emulator's all-in-one jar, from the environment variable or a Cloud SDK install."""
    configured = os.environ.get(PUBSUB_JAR_VARIABLE)
    if configured:
        jar = Path(configured).expanduser()
        if not jar.is_file():
            raise UserError(f"{PUBSUB_JAR_VARIABLE}={configured}: no such file")
        return jar
    for pattern in PUBSUB_JAR_GLOBS:
        folder, name = pattern.rsplit("/", 1)
        found = sorted(Path(folder).expanduser().glob(name))
        if found:
            return found[-1]
    return None


def pubsub_emulator() -> Artifact:
    jar = find_pubsub_emulator_jar()
    if jar is None:
        return Artifact("pubsub", "missing", Path("/nonexistent"), "pubsub-emulator.jar", None)
    version = jar.name.removeprefix("cloud-pubsub-emulator-").removesuffix("-all.jar")
    return Artifact("pubsub", version, jar.parent, jar.name, None)


def require(artifact: Artifact) -> Path:
    """The artifact's path; UserError naming the fix when it is not installed."""
    if artifact.installed:
        return artifact.path
    if artifact.name == "pubsub":
        raise UserError(f"Pub/Sub emulator not found: {PUBSUB_HOW_TO_GET}")
    raise UserError(f"{artifact.name} {artifact.version} is not installed: run `brokerbench setup`")


def all_artifacts() -> list[Artifact]:
    return [kafka(), elasticmq(), schema_registry_server(), toxiproxy(), pubsub_emulator()]
