"""Who is acting, and what they may change: anonymous visitor identities and the ownership rule.

**The rule.** Every action that stops, deletes, cancels or rewrites someone's work names the
visitor acting (`Visitor`): stopping a job, cancelling a queued one, stopping a sweep, deleting
a run, reusing a run's settings, writing label marks. On a private install (`Visitor.local()`,
the default everywhere, the CLI's too) there are no owners and every action is allowed. On a
hosted demo (`Visitor(id, hosted=True)`) the action is refused with `NotYours` unless the
visitor started that work: its status records the starting visitor's id as `owner`.
The core checks it (`Visitor.require`), whoever calls; the pages only hide what would be refused.

**The identity.** A hosted visitor is a random id (128 bits), anonymous: no login, nothing
about the person. The browser keeps it in a cookie as a token, `<id>.<issued>.<signature>`,
where the signature is an HMAC-SHA256 of the id and the issue time under a secret only the
server knows (`server_secret`). A client can read and resend its own token, but cannot make a
token for another id: without the secret, no signature checks (`verify`). A token lasts
`TOKEN_DAYS` days from when it was issued; the page issues a fresh one for the same id once a
day's old, so a visitor who comes back within a month keeps their work, and one who clears
cookies (or uses another browser) is a new visitor.

The secret comes from `MNIST_VISITOR_SECRET` when set (several servers behind one link must
share it), else from a file the server makes once, `<runs>/.secrets/visitor-key`, with mode 600,
so restarts keep every visitor's identity.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

TOKEN_DAYS = 30
RENEW_AFTER_SECONDS = 24 * 3600  # a token older than this is reissued (same id) when its visitor comes back
SECRETS_FOLDER = ".secrets"  # in the runs folder; hidden, so it is not listed as a run
_ID_HEX = 32  # 128 random bits


class NotYours(Exception):
    """A visitor asked to change work that another visitor started; the message says so plainly.

    Not an OSError: code that handles a full disk must not take a refusal for one."""


@dataclass(frozen=True)
class Visitor:
    """The person acting. `hosted`: on a shared demo, where a visitor may change only their own work."""

    id: str = ""
    hosted: bool = False

    @classmethod
    def local(cls) -> Visitor:
        """A private install's user (the CLI, a notebook, a local app): may do everything."""
        return cls()

    def owns(self, owner: str) -> bool:
        """Whether this visitor may change work whose status records `owner` as who started it."""
        return not self.hosted or (bool(self.id) and owner == self.id)

    def require(self, owner: str, action: str) -> None:
        """Raise NotYours unless this visitor may `action` (e.g. "stop this run") work owned by `owner`."""
        if not self.owns(owner):
            raise NotYours(f"You cannot {action}: another visitor started it. "
                           f"On this shared demo each visitor can change only their own work.")

    @property
    def marks_owner(self) -> str:
        """Whose label marks this visitor reads and writes: "" (the shared marks) on a private
        install, the visitor's own on a hosted demo."""
        return self.id if self.hosted else ""


def new_id() -> str:
    return secrets.token_hex(_ID_HEX // 2)


def sign(visitor_id: str, secret: bytes, issued: float | None = None) -> str:
    """The cookie token for `visitor_id`, issued now (or at `issued`, a Unix time)."""
    issued_at = int(time.time() if issued is None else issued)
    return f"{visitor_id}.{issued_at}.{_signature(visitor_id, issued_at, secret)}"


def verify(token: str | None, secret: bytes, now: float | None = None) -> tuple[str, int] | None:
    """(id, issue time) when `token` was made by `sign` with this secret and has not expired, else None."""
    if not token or token.count(".") != 2:
        return None
    visitor_id, issued, signature = token.split(".")
    if len(visitor_id) != _ID_HEX or not all(c in "0123456789abcdef" for c in visitor_id) or not issued.isdigit():
        return None
    issued_at = int(issued)
    if not hmac.compare_digest(signature, _signature(visitor_id, issued_at, secret)):
        return None
    age = (time.time() if now is None else now) - issued_at
    if age < -300 or age > TOKEN_DAYS * 24 * 3600:  # from the future (beyond clock skew) or expired
        return None
    return visitor_id, issued_at


def _signature(visitor_id: str, issued_at: int, secret: bytes) -> str:
    return hmac.new(secret, f"visitor:{visitor_id}.{issued_at}".encode(), hashlib.sha256).hexdigest()


def server_secret(runs_dir: str | Path) -> bytes:
    """The key that signs visitor tokens: `MNIST_VISITOR_SECRET`, else a file made once (mode 600)."""
    configured = os.environ.get("MNIST_VISITOR_SECRET", "")
    if configured:
        return configured.encode()
    path = Path(runs_dir) / SECRETS_FOLDER / "visitor-key"
    try:
        return _read_key(path)
    except FileNotFoundError:
        damaged = False
    except ValueError:  # not a key (a truncated or edited file): a new one; old tokens stop verifying
        log.warning("%s is not a key; making a new one (visitors get new identities)", path.name)
        damaged = True
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    staging = path.with_name(f".visitor-key.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never readable by others
    try:
        os.write(descriptor, key.encode())
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    try:
        if damaged:
            os.replace(staging, path)
        else:
            os.link(staging, path)  # fails if another process made the key first: then theirs is the key
    except FileExistsError:
        pass
    finally:
        staging.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    key = bytes.fromhex(path.read_text().strip())
    if len(key) < 16:
        raise ValueError("too short")
    return key
