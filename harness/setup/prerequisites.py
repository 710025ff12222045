"""Checks for the tools that install or run the brokers (java, mvn, go)."""

import re
import shutil
import subprocess
from dataclasses import dataclass

from harness.errors import UserError


@dataclass(frozen=True)
class Tool:
    command: str
    minimum: tuple[int, ...]
    version_args: tuple[str, ...]
    version_pattern: str
    how_to_get: str

    def require(self) -> str:
        """Path of the tool; UserError naming how to get it when missing or too old."""
        path = shutil.which(self.command)
        wanted = ".".join(map(str, self.minimum))
        if path is None:
            raise UserError(
                f"{self.command} not found on PATH ({wanted}+ needed): {self.how_to_get}"
            )
        found = self.version(path)
        if found is not None and found < self.minimum:
            shown = ".".join(map(str, found))
            raise UserError(
                f"{self.command} {shown} is too old, {wanted}+ needed: {self.how_to_get}"
            )
        return path

    def version(self, path: str) -> tuple[int, ...] | None:
        try:
            completed = subprocess.run(
                [path, *self.version_args], capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        match = re.search(self.version_pattern, completed.stdout + completed.stderr)
        if match is None:
            return None
        return tuple(int(part) for part in match.groups() if part is not None)


JAVA = Tool(
    "java",
    (17,),
    ("-version",),
    r'version "(\d+)(?:\.(\d+))?',
    "install a JDK (Debian/Ubuntu: apt-get install openjdk-17-jdk-headless; macOS: brew install "
    "openjdk@17)",
)
MAVEN = Tool(
    "mvn",
    (3, 6),
    ("-v",),
    r"Apache Maven (\d+)\.(\d+)",
    "install Apache Maven (Debian/Ubuntu: apt-get install maven; macOS: brew install maven)",
)
GO = Tool(
    "go",
    (1, 23),
    ("version",),
    r"go(\d+)\.(\d+)",
    "install Go from your OS packages or the official Go installer (macOS: brew install go)",
)
