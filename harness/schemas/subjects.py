"""Registry names that need no registry client: compatibility rules and subject naming (so
that scenario files validate without the ``schemas`` extra installed)."""

from typing import Literal

Compatibility = Literal[
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
]


def subject_of(topic: str) -> str:
    """The subject of a topic's values under Confluent's default naming (TopicNameStrategy)."""
    return f"{topic}-value"
