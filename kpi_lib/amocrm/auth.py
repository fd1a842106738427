"""Tokens for the amoCRM API: a long-lived token, or OAuth 2.0 with a token file.

The long-lived token (``AMOCRM_TOKEN``) is the simple path: it has no refresh token.

OAuth keeps ``{access_token, refresh_token, expires_at}`` in a JSON file (mode 0600).
amoCRM refresh tokens are single-use, so a refresh is done under a file lock (two syncs
never both refresh), the lock holder re-reads the file first (another process may have
refreshed already), and the new pair is written atomically (temporary file, fsync,
``os.replace``) before the new access token is used.  Losing the new pair would lose the
account's access, so nothing is sent with it until it is on disk.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from ..config import AmoEnv, Settings, amocrm_env
from ..errors import ApiError, AuthError, ConfigError, LockBusyError
from ..files import hold_lock, write_atomic
from ..log import register_secret

#: Refresh this many seconds before the access token expires.
EXPIRY_MARGIN = 300

TOKEN_HELP = ("create a long-lived token in amoCRM › Settings › Integrations › your private integration › "
              "Keys and scopes › Generate long-lived token, then export AMOCRM_TOKEN=… "
              "(or set up OAuth: AMOCRM_CLIENT_ID, AMOCRM_CLIENT_SECRET, AMOCRM_REDIRECT_URI and "
              "'kpi-report auth --code CODE'); see the README, 'Connect your amoCRM account'")


class StaticToken:
    """A long-lived token: used as is, never refreshed."""

    can_refresh = False

    def __init__(self, token: str):
        register_secret(token)
        self._token = token

    def access_token(self) -> str:
        return self._token

    def refresh(self, stale: str) -> str:  # pragma: no cover - guarded by can_refresh
        raise AuthError(f"a long-lived token cannot be refreshed: {TOKEN_HELP}", 401)


def write_token_file(path: Path, answer: Mapping[str, Any]) -> dict:
    """Save an ``/oauth2/access_token`` answer atomically with mode 0600; returns what was saved."""
    data = {
        "access_token": answer["access_token"],
        "refresh_token": answer["refresh_token"],
        "expires_at": int(time.time()) + int(answer.get("expires_in") or 86400),
        "token_type": answer.get("token_type", "Bearer"),
    }
    register_secret(data["access_token"])
    register_secret(data["refresh_token"])
    write_atomic(path, json.dumps(data), mode=0o600)
    return data


def read_token_file(path: Path) -> dict:
    """The saved token pair; an AuthError naming the fix when missing or damaged."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AuthError(f"no OAuth token file at {path}: exchange an authorization code first with "
                        "'kpi-report auth --code CODE' (or use a long-lived token in AMOCRM_TOKEN)") from None
    except (OSError, ValueError) as exc:
        raise AuthError(f"the OAuth token file {path} cannot be read ({type(exc).__name__}): authorize again "
                        "with 'kpi-report auth --code CODE'") from None
    if not isinstance(data, dict) or not data.get("access_token") or not data.get("refresh_token"):
        raise AuthError(f"the OAuth token file {path} has no token pair: authorize again with "
                        "'kpi-report auth --code CODE'")
    register_secret(data["access_token"])
    register_secret(data["refresh_token"])
    return data


class OAuthTokens:
    """OAuth tokens kept in a file and shared safely between processes.

    Parameters
    ----------
    path : Path
        The token file (JSON ``{access_token, refresh_token, expires_at}``).
    client_id, client_secret, redirect_uri : str
        The integration's keys, as in amoCRM › Settings › Integrations.
    post : callable
        Sends the JSON body to ``/oauth2/access_token`` and returns the parsed answer
        (:meth:`AmoClient.post_token`, so that it passes the rate limiter).
    """

    can_refresh = True

    def __init__(self, path: Path, client_id: str, client_secret: str, redirect_uri: str,
                 post: Callable[[Mapping[str, Any]], dict] | None = None):
        register_secret(client_secret)
        self.path = Path(path)
        self.client_id, self.client_secret, self.redirect_uri = client_id, client_secret, redirect_uri
        self.post = post
        self.lock_path = Path(str(self.path) + ".lock")
        self._data: dict | None = None
        self.refreshes = 0

    def access_token(self) -> str:
        if self._data is None:
            self._data = read_token_file(self.path)
        if int(self._data.get("expires_at") or 0) < time.time() + EXPIRY_MARGIN:
            return self.refresh(self._data["access_token"])
        return self._data["access_token"]

    def refresh(self, stale: str) -> str:
        """A fresh access token replacing ``stale``, refreshing at most once across processes."""
        try:
            with hold_lock(self.lock_path, "token refresh", timeout=120):
                data = read_token_file(self.path)
                fresh = int(data.get("expires_at") or 0) >= time.time() + EXPIRY_MARGIN
                if data["access_token"] != stale and fresh:
                    self._data = data  # another process refreshed already
                    return data["access_token"]
                try:
                    answer = self.post(self._body("refresh_token", refresh_token=data["refresh_token"]))
                except AuthError:
                    raise
                except ApiError as exc:
                    raise AuthError(
                        f"amoCRM refused to refresh the OAuth token ({exc.detail or exc}): the refresh token "
                        "was already used or is older than 3 months; authorize again with "
                        "'kpi-report auth --code CODE'", exc.status, exc.detail) from None
                self._data = write_token_file(self.path, answer)
                self.refreshes += 1
                return self._data["access_token"]
        except LockBusyError:
            raise AuthError(f"another sync holds {self.lock_path} for over 2 minutes: wait for it to "
                            "finish, then retry") from None

    def _body(self, grant_type: str, **extra: str) -> dict:
        return {"client_id": self.client_id, "client_secret": self.client_secret, "grant_type": grant_type,
                "redirect_uri": self.redirect_uri, **extra}

    def exchange_code(self, code: str) -> dict:
        """Trade an authorization code (valid 20 minutes) for the first token pair and save it."""
        register_secret(code)
        with hold_lock(self.lock_path, "token exchange", timeout=120):
            try:
                answer = self.post(self._body("authorization_code", code=code))
            except ApiError as exc:
                if isinstance(exc, AuthError):
                    raise
                raise AuthError(
                    f"amoCRM refused the authorization code ({exc.detail or exc}): codes are single-use and "
                    "expire after 20 minutes; copy a new one from the integration's settings and check "
                    "AMOCRM_REDIRECT_URI matches the integration's exactly", exc.status, exc.detail) from None
            self._data = write_token_file(self.path, answer)
            return self._data


def make_token_source(env: AmoEnv, post: Callable[[Mapping[str, Any]], dict] | None = None):
    """The token source the environment describes: AMOCRM_TOKEN first, else OAuth."""
    if env.token:
        return StaticToken(env.token)
    if env.client_id and env.client_secret and env.redirect_uri and env.token_file:
        return OAuthTokens(env.token_file, env.client_id, env.client_secret, env.redirect_uri, post)
    raise ConfigError(f"AMOCRM_TOKEN is not set: {TOKEN_HELP}")


def require_base_url(env: AmoEnv) -> str:
    """The account's base URL, or a ConfigError naming the variables to set."""
    if not env.base_url:
        raise ConfigError("AMOCRM_SUBDOMAIN is not set: export AMOCRM_SUBDOMAIN=yourcompany for "
                          "https://yourcompany.amocrm.ru (and AMOCRM_DOMAIN=kommo.com or amocrm.com if that is "
                          "your domain), or AMOCRM_BASE_URL=https://yourcompany.amocrm.ru")
    return env.base_url


def authorize(settings: Settings, code: str) -> Path:
    """Exchange an OAuth authorization code for the first token pair (``kpi-report auth``).

    Returns
    -------
    Path
        The token file the pair was saved to (mode 0600).
    """
    from .client import AmoClient

    env = amocrm_env(data_dir=settings.data_dir)
    missing = [name for name, value in (("AMOCRM_CLIENT_ID", env.client_id),
                                        ("AMOCRM_CLIENT_SECRET", env.client_secret),
                                        ("AMOCRM_REDIRECT_URI", env.redirect_uri)) if not value]
    if missing:
        raise ConfigError(f"{', '.join(missing)} not set: copy the integration ID, secret key and redirect URI "
                          "from amoCRM › Settings › Integrations › your integration › Keys and scopes")
    client = AmoClient(require_base_url(env), max_rps=env.max_rps)
    try:
        tokens = OAuthTokens(env.token_file, env.client_id, env.client_secret, env.redirect_uri, client.post_token)
        tokens.exchange_code(code)
    finally:
        client.close()
    return env.token_file
