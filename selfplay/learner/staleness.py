"""Staleness counted in accepted incumbents, not in version numbers.

``learner.max_staleness=N`` keeps decisions played by the incumbent or by one of the N incumbents
before it. Rejected candidates take version numbers too, so counting numbers would let a run of
rejections age every decision in the replay window at once: on the next acceptance nothing would
qualify, the learner could not sample, and a run paced on the learner would idle to its budget.
Actors only ever play incumbents, so the lineage of accepted incumbents is the measure of age.

The lineage lives in ``RUN_DIR/lineage.json`` (written by the driver on each acceptance), so a
resumed run counts the same generations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from selfplay.atomic import atomic_write_json
from selfplay.errors import UserError

LINEAGE_FILENAME = "lineage.json"


@dataclass
class IncumbentLineage:
    """The accepted incumbents of a run, oldest first (version 0, the first weights, leads)."""

    versions: list[int] = field(default_factory=lambda: [0])

    @property
    def incumbent(self) -> int:
        return self.versions[-1]

    def accept(self, version: int) -> None:
        """``version`` became the incumbent (versions only grow; a repeat is ignored)."""
        if version > self.versions[-1]:
            self.versions.append(version)

    def oldest_fresh(self, max_staleness: int) -> int:
        """The oldest version whose decisions still count: played at most ``max_staleness``
        incumbents ago (0 = keep all, as is everything while the lineage is shorter)."""
        if max_staleness <= 0 or len(self.versions) <= max_staleness:
            return 0
        return self.versions[-1 - max_staleness]

    def sample_version(self, max_staleness: int) -> int:
        """The ``current_version`` to hand ReplaySampler, whose filter keeps decisions with
        ``policy_version >= current_version - max_staleness``: placed so that the oldest fresh
        incumbent is exactly the limit."""
        if max_staleness <= 0:
            return self.incumbent  # the sampler keeps everything; any version will do
        return self.oldest_fresh(max_staleness) + max_staleness

    # -- persistence ---------------------------------------------------------------------------

    def save(self, run_dir: Path) -> None:
        atomic_write_json(Path(run_dir) / LINEAGE_FILENAME, {"versions": self.versions})

    @classmethod
    def load(cls, run_dir: Path, incumbent: int) -> IncumbentLineage:
        """The lineage saved in ``run_dir``, made consistent with the learner's ``incumbent``
        (a crash between the two writes leaves one ahead of the other). Without a file (a fresh
        run, or one from before lineages were kept): version 0 then ``incumbent``, so everything
        older counts as one generation back."""
        path = Path(run_dir) / LINEAGE_FILENAME
        if not path.exists():
            return cls(sorted({0, incumbent}))
        try:
            versions = [int(v) for v in json.loads(path.read_text())["versions"]]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UserError(f"{path}: cannot read the incumbent lineage ({err}); "
                            "move it away to count staleness afresh") from None
        versions = sorted(set(versions))
        if incumbent in versions:
            versions = versions[: versions.index(incumbent) + 1]
        else:
            versions = [v for v in versions if v < incumbent] + [incumbent]
        return cls(versions or [incumbent])
