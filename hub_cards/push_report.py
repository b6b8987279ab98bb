"""What a push did (`PushReport`), its error (`PushError`) and the git object id of a file's contents: shared by the
model push (`hub_cards.publish`) and the Space push (`hub_cards.space`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


def git_blob_oid(content: bytes) -> str:
    """The git blob id of `content` (what the Hub reports as a small file's `blob_id`)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class PushError(RuntimeError):
    """An upload failed; `report` says which files are on the Hub and which are not."""

    def __init__(self, message: str, report: PushReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class PushReport:
    """What a push did. Paths are relative to the repository root."""

    repo_id: str
    revision: str
    uploaded: list[str] = field(default_factory=list)  # sent and committed by this push
    unchanged: list[str] = field(default_factory=list)  # already identical on the Hub
    not_uploaded: list[str] = field(default_factory=list)  # after a failure: missing or outdated on the Hub
    remote_only: list[str] = field(default_factory=list)  # on the Hub but not in the folder (left as they are)
    left_out: list[str] = field(default_factory=list)  # "NAME: reason" for every file of the folder not published
    redacted: list[str] = field(default_factory=list)  # "FILE: field, field" where local paths were replaced
    commit_url: str | None = None  # the last commit this push made
    commit_oid: str | None = None
    pinned_revision: str | None = None  # the commit with the model's files, which the card's examples pin
    code_repo: str | None = None
    code_revision: str | None = None
    error: str | None = None
    space: Any = None  # the `hub_cards.space.SpaceReport` of a push with `space=`

    def summary(self) -> str:
        lines = [f"{self.repo_id}@{self.revision}: {len(self.uploaded)} uploaded, {len(self.unchanged)} unchanged"]
        if self.commit_url:
            lines.append(f"commit: {self.commit_url}")
        if self.pinned_revision:
            lines.append(f"card examples pin revision {self.pinned_revision} (the commit with the code and weights)")
        if self.code_repo:
            pinned = f" at {self.code_revision}" if self.code_revision else ""
            lines.append(f"remote code served from {self.code_repo}{pinned}")
        if self.remote_only:
            lines.append(f"on the Hub but not in the folder (kept): {', '.join(self.remote_only)}")
        if self.redacted:
            lines.append(f"local paths replaced by '<local path>/NAME' in the uploaded copies ({len(self.redacted)}):")
            lines.extend(f"  {entry}" for entry in self.redacted)
        if self.left_out:
            lines.append(f"left out ({len(self.left_out)}):")
            lines.extend(f"  {entry}" for entry in self.left_out)
        if self.space is not None:
            lines.append(self.space.summary())
        if self.error:
            lines.append(f"FAILED: {self.error}")
            lines.append(f"not on the Hub ({len(self.not_uploaded)}): {', '.join(self.not_uploaded) or '-'}")
            lines.append("the local folder is unchanged; run the same command again to finish the upload")
        return "\n".join(lines)
