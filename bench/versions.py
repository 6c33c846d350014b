"""Another version of this code to benchmark beside the working tree, in the same run.

On a shared machine absolute figures drift from one hour to the next; a before/after judged in
one run, turns interleaved, does not. `checkout(ref)` gives a detached `git worktree` of `ref`
(kept under bench/results/, reused while the ref points at the same commit); it runs on this
checkout's `.venv`, which is fine as long as the lock files agree.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def checkout(ref: str) -> Path:
    sha = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    tree = ROOT / "bench" / "results" / f"code-{sha[:12]}"
    if not tree.exists():
        tree.parent.mkdir(parents=True, exist_ok=True)
        git("worktree", "add", "--detach", str(tree), sha)
    return tree


def describe(ref: str) -> str:
    sha = git("rev-parse", "--short", f"{ref}^{{commit}}")
    return f"`{ref}` ({sha})" if ref != sha else f"`{sha}`"


def git(*args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip()
