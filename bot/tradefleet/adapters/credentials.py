"""Exchange API credentials: from the environment or mounted secret files, never from config files.

Sources, in order: `TRADEFLEET_API_KEY_FILE` / `TRADEFLEET_API_SECRET_FILE` (a Kubernetes Secret
mounted as files, the production way) or `TRADEFLEET_API_KEY` / `TRADEFLEET_API_SECRET`. Setting both
the variable and the file for the same value is an error: two sources that may disagree is how a bot
ends up trading on the wrong account.

The secret never appears in `repr`, `str`, logs or error messages; the key is shown only by its first
four characters, enough to tell two accounts apart in a log. Loading credentials registers both
values with the log scrubber (`logs.register_secrets`), so no logger, ours or a library's, can
write them afterwards. This module refuses to read credentials
from `BotConfig` (a ConfigMap is not a secret store).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tradefleet.errors import ConfigError
from tradefleet.logs import MIN_SECRET_LEN, register_secrets

KEY_ENV = "TRADEFLEET_API_KEY"
SECRET_ENV = "TRADEFLEET_API_SECRET"
KEY_FILE_ENV = "TRADEFLEET_API_KEY_FILE"
SECRET_FILE_ENV = "TRADEFLEET_API_SECRET_FILE"


@dataclass(frozen=True, slots=True)
class Credentials:
    api_key: str = field(repr=False)
    secret: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Credentials(api_key={self.key_hint!r}, secret='***')"

    __str__ = __repr__

    @property
    def key_hint(self) -> str:
        return (self.api_key[:4] + "…") if len(self.api_key) > 4 else "***"

    def sign(self, payload: str) -> str:
        """HMAC-SHA256 hex signature of `payload`, as Binance expects for SIGNED requests."""
        return hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def _one(env: Mapping[str, str], var: str, file_var: str, what: str) -> str | None:
    direct = env.get(var)
    path = env.get(file_var)
    if direct and path:
        raise ConfigError(f"both {var} and {file_var} are set; set only one source for the API {what}")
    if path:
        try:
            value = Path(path).read_text().strip()
        except OSError as e:
            # The path is not secret; the content never appears in a message.
            raise ConfigError(f"cannot read {file_var} ({path}): {e.strerror}") from None
        if not value:
            raise ConfigError(f"{file_var} ({path}) is empty")
        return value
    return direct.strip() if direct else None


def load_credentials(env: Mapping[str, str] | None = None, *, required: bool = False) -> Credentials | None:
    """Credentials from `env` (default `os.environ`); None when none are set and not `required`."""
    env = os.environ if env is None else env
    key = _one(env, KEY_ENV, KEY_FILE_ENV, "key")
    secret = _one(env, SECRET_ENV, SECRET_FILE_ENV, "secret")
    if key is None and secret is None:
        if required:
            raise ConfigError(
                f"exchange mode needs API credentials: set {KEY_ENV}/{SECRET_ENV} "
                f"or {KEY_FILE_ENV}/{SECRET_FILE_ENV}"
            )
        return None
    if key is None or secret is None:
        missing = KEY_ENV if key is None else SECRET_ENV
        raise ConfigError(f"API key and secret must be set together; {missing} (or its _FILE) is missing")
    for name, value in ((KEY_ENV, key), (SECRET_ENV, secret)):
        if len(value) < MIN_SECRET_LEN or not value.isprintable() or any(c.isspace() for c in value):
            raise ConfigError(
                f"{name} (or its _FILE) is not an API credential: at least {MIN_SECRET_LEN} printable "
                "characters without spaces"
            )
    register_secrets(key, secret)
    return Credentials(api_key=key, secret=secret)
