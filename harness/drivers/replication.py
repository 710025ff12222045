"""Kafka's replication settings as a workload parameter, so one suite can compare
configurations under the same faults: the topics' replication factor, ``min.insync.replicas``
and ``unclean.leader.election.enable``, and the producer's ``acks``.

Each unset field keeps the broker's (or the client's) default. Other brokers have no such
settings and ignore them, as they ignore ``idempotent_producer``."""

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from harness.models import FrozenModel

Acks = Literal["all", 1, 0]


class Replication(FrozenModel):
    factor: Annotated[int, Field(ge=1, le=16)] | None = None
    """Replicas of each partition (``replication_factor``); more than the cluster's brokers
    is refused when the topic is created."""
    min_insync_replicas: Annotated[int, Field(ge=1, le=16)] | None = None
    """Replicas that must have a write before an ``acks: all`` produce succeeds."""
    acks: Acks | None = None
    """The producer's ``acks``: ``all`` waits for the in-sync replicas, ``1`` for the leader
    only, ``0`` for nothing. Other than ``all`` turns the default idempotent producer off."""
    unclean_leader_election: bool | None = None
    """Let a replica that is not in sync become leader (availability over acknowledged
    writes)."""

    @model_validator(mode="after")
    def _min_insync_within_the_factor(self) -> Self:
        if (
            self.factor is not None
            and self.min_insync_replicas is not None
            and self.min_insync_replicas > self.factor
        ):
            raise ValueError(
                f"min_insync_replicas {self.min_insync_replicas} exceeds factor {self.factor}: "
                "no write could ever be acknowledged with acks: all"
            )
        return self

    def topic_config(self) -> dict[str, str]:
        """The topic-level settings to create each topic with."""
        config = {}
        if self.min_insync_replicas is not None:
            config["min.insync.replicas"] = str(self.min_insync_replicas)
        if self.unclean_leader_election is not None:
            config["unclean.leader.election.enable"] = str(self.unclean_leader_election).lower()
        return config
