"""Orchestration versions: how they compare and which ones a worker runs. Pure: no I/O.

See ``docs/semantics.md``, "Versioning". A version is a string; ``None`` and ``""`` both
mean "no version" and compare below every version. Two versions made only of dot-separated
decimal numbers compare as numbers (``1.9 < 1.10 < 2``); otherwise, or when the numbers are
equal but the spelling differs (``1`` and ``01``), as strings. So two versions are equal
exactly when they are the same string, which is what the lease queries compare.
"""

from __future__ import annotations

from dataclasses import dataclass

from taskloom.errors import ConfigurationError
from taskloom.models import FailureDetails

MATCHES = ("any", "exact", "current_or_older")
MISMATCHES = ("wait", "fail")

#: The error type of an instance failed by a worker whose policy does not run its version.
MISMATCH_ERROR = "taskloom.errors.VersionMismatchError"


def _numbers(version: str) -> tuple[int, ...] | None:
    parts = version.split(".")
    if all(p and p.isascii() and p.isdigit() for p in parts):
        return tuple(int(p) for p in parts)
    return None


def compare_versions(a: str | None, b: str | None) -> int:
    """-1, 0 or 1 as ``a`` is older than, the same as, or newer than ``b``."""
    a, b = a or "", b or ""
    if a == b:
        return 0
    if not a or not b:
        return -1 if not a else 1
    na, nb = _numbers(a), _numbers(b)
    if na is not None and nb is not None and na != nb:
        return -1 if na < nb else 1
    return -1 if a < b else 1


def _check_version(value: object, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise ConfigurationError(
            f"{what} must be a non-empty string without surrounding spaces (or None), not {value!r}"
        )
    if len(value) > 100:
        raise ConfigurationError(f"{what} is longer than 100 characters: {value[:20]!r}...")
    return value


def check_version(value: object, what: str = "version") -> str | None:
    """``value`` if it is a valid version or None; else a ValueError naming ``what``."""
    try:
        return _check_version(value, what)
    except ConfigurationError as exc:
        raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class VersionPolicy:
    """An app's versioning: ``version`` (what its workers run), ``default_version`` (for
    starts that name none), ``match`` (which instances its workers run) and ``mismatch``
    (what they do with the others: leave them for another worker, or fail them)."""

    version: str | None = None
    default_version: str | None = None
    match: str = "any"
    mismatch: str = "wait"

    def __post_init__(self) -> None:
        _check_version(self.version, "version")
        _check_version(self.default_version, "default_version")
        if self.match not in MATCHES:
            raise ConfigurationError(
                f"version_match must be one of {', '.join(map(repr, MATCHES))}, not {self.match!r}"
            )
        if self.mismatch not in MISMATCHES:
            raise ConfigurationError(
                f"version_mismatch must be 'wait' or 'fail', not {self.mismatch!r}"
            )
        if self.match != "any" and self.version is None:
            raise ConfigurationError(
                f"version_match={self.match!r} compares instances with this worker's "
                "version: give the App a version= too"
            )

    @property
    def start_version(self) -> str | None:
        """The version stamped on a start that names none: ``default_version``, else the
        worker's own ``version`` (else None)."""
        return self.default_version if self.default_version is not None else self.version

    def resolve(self, explicit: str | None) -> str | None:
        """The version of a new instance: the one the start names, else
        :attr:`start_version`."""
        return explicit if explicit else self.start_version

    def may_run(self, instance_version: str | None) -> bool:
        """Whether this worker runs an instance of ``instance_version``."""
        if self.match == "any":
            return True
        order = compare_versions(instance_version, self.version)
        return order == 0 if self.match == "exact" else order <= 0

    @property
    def filters(self) -> bool:
        """Whether leases should skip instances this worker may not run (it waits for
        another worker rather than failing them)."""
        return self.match != "any" and self.mismatch == "wait"

    def mismatch_failure(self, instance_id: str, instance_version: str | None) -> FailureDetails:
        """The failure of an instance this worker may not run (``mismatch="fail"``)."""
        wanted = "exactly" if self.match == "exact" else "at most"
        return FailureDetails(
            MISMATCH_ERROR,
            f"orchestration instance {instance_id!r} has version "
            f"{_shown(instance_version)} but this worker runs version {_shown(self.version)} "
            f"(version_match={self.match!r} runs {wanted} {_shown(self.version)}); "
            "version_mismatch='fail' failed it",
        )


def _shown(version: str | None) -> str:
    return repr(version) if version else "none"
