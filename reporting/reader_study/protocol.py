"""A timing-study protocol, read from YAML and checked before anything is stored.

Example (docs/timing-study.md has the whole format)::

    name: cxr-timing-2026
    seed: 20261122
    reads_per_reader: {resident: 30, attending: 30}
    readers: {resident: [rita, rob], attending: [alan, ann]}
    cases: [1.2.826.0.1.3680043.10.1, ...]      # Study Instance UIDs or accession numbers
    practice_cases: [1.2.826.0.1.3680043.10.99]
    arms:
      resident: {scratch: 1, model: 2}           # weights: one third from scratch
      attending: {resident_scratch: 1, model: 2}
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from radraft.enums import Arm, Role
from radraft.errors import InvalidInputError
from reporting.reader_study.arms import SHORT_NAMES

READER_ROLES = (Role.RESIDENT, Role.ATTENDING)


class ProtocolError(InvalidInputError):
    """The protocol cannot be run as written; the message says what to change."""


class Protocol(BaseModel):
    """A checked protocol; arms are normalised to ``Arm`` values with integer weights."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")
    seed: int
    readers: dict[Role, list[str]]
    cases: list[str] = Field(min_length=1)
    practice_cases: list[str] = Field(default_factory=list)
    reads_per_reader: dict[Role, int]
    arms: dict[Role, dict[str, int]]
    template: str = ""
    """What a from-scratch read starts with (blank if empty)."""
    equivalence_margin: float = Field(default=0.20, gt=0, lt=1)
    """Attending equivalence: the time ratio's 90% CI within [1 - m, 1 / (1 - m)]."""

    @field_validator("readers", "reads_per_reader", "arms")
    @classmethod
    def _reader_roles_only(cls, value: dict[Role, Any]) -> dict[Role, Any]:
        for role in value:
            if role not in READER_ROLES:
                raise ValueError(f"only residents and attendings read, not {role}")
        return value

    def arm_weights(self, role: Role) -> dict[Arm, int]:
        """The arms of ``role`` with their weights (zero-weight arms dropped)."""
        names = SHORT_NAMES[role]
        weights: dict[Arm, int] = {}
        for name, weight in self.arms.get(role, {}).items():
            if name not in names:
                raise ProtocolError(f"unknown {role} arm {name!r}; choose from {', '.join(names)}")
            if weight < 0:
                raise ProtocolError(f"arm weight of {role} {name} is negative")
            if weight:
                weights[names[name]] = weight
        return weights


def parse_protocol(text: str) -> Protocol:
    """Parse and check a YAML protocol; ``ProtocolError`` names every problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ProtocolError(f"not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ProtocolError("a protocol is a YAML mapping (name, seed, readers, cases, arms)")
    try:
        protocol = Protocol.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in error.errors()
        )
        raise ProtocolError(problems) from error
    for role in protocol.readers:
        if protocol.readers[role] and not protocol.arm_weights(role):
            raise ProtocolError(f"{role}s read but have no arm with a positive weight")
        wanted = protocol.reads_per_reader.get(role, 0)
        if protocol.readers[role] and not 0 < wanted <= len(protocol.cases):
            raise ProtocolError(
                f"reads_per_reader.{role} must be between 1 and the {len(protocol.cases)} cases"
            )
    overlap = set(protocol.cases) & set(protocol.practice_cases)
    if overlap:
        raise ProtocolError(f"practice cases are also study cases: {sorted(overlap)}")
    return protocol
