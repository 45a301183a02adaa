"""The control API's per-stack token: who may use a running stack.

The daemon creates a fresh random token at every start and writes it, mode 0600, to
`<state dir>/control.token`: whoever can read that file owns the stack (its user, or root).
Clients send it as `Authorization: Bearer <token>`. They find it, in this order:

1. the environment variable `HELIUS_CONTROL_TOKEN` (what the suite runner hands to `chaos`);
2. the token file of the state directory (`--state-dir` for the CLI; the configuration key
   `helius_stack_dir`, default `.helius/stack`, for the chaos driver).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from chaoshelius.stack.state import write_private

TOKEN_ENV = "HELIUS_CONTROL_TOKEN"  # noqa: S105  the variable's name, not a token
TOKEN_FILE_NAME = "control.token"  # noqa: S105  the file's name, not a token


def token_file(state_dir: Path) -> Path:
    return state_dir / TOKEN_FILE_NAME


def create_token(state_dir: Path) -> str:
    """A new random token for this stack, written 0600 (replaces the previous one)."""
    token = secrets.token_urlsafe(32)
    write_private(token_file(state_dir), token + "\n")
    return token


def read_token(state_dir: Path) -> str | None:
    """The token in the state directory, None if there is none (or it is unreadable)."""
    try:
        token = token_file(state_dir).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return token or None


def find_token(state_dir: Path | None) -> str | None:
    """`HELIUS_CONTROL_TOKEN` if set, else the state directory's token file."""
    from_env = os.environ.get(TOKEN_ENV, "").strip()
    if from_env:
        return from_env
    return read_token(state_dir) if state_dir is not None else None


def bearer(token: str | None) -> dict[str, str]:
    """The request header carrying `token` (none without a token: the API answers 401)."""
    return {"Authorization": f"Bearer {token}"} if token else {}
