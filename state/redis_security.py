"""Credentials and TLS for every Redis connection drfleet makes (broker, result backend,
RedBeat, fleet state).

Configuration, all optional (docs/operations.md, "Redis: password, ACL user, TLS"):

  DRFLEET_REDIS_USERNAME       ACL user (default: Redis's ``default`` user)
  DRFLEET_REDIS_PASSWORD_FILE  file holding the password (a compose/Kubernetes secret);
                               put into every Redis URL that carries no password itself
  DRFLEET_REDIS_CA_FILE        CA certificate(s) that sign the server's certificate (rediss://)
  DRFLEET_REDIS_CERT_FILE      client certificate, when the server requires one
  DRFLEET_REDIS_KEY_FILE       its private key

A ``rediss://`` URL always verifies the server's certificate (``CERT_REQUIRED``); there is
no option to turn verification off. URLs are shown only through ``masked`` (password
replaced by ``**``).
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import redis

from drfleet import settings
from drfleet.errors import DrfleetError


class RedisConfigInvalid(DrfleetError):
    hint = "check DRFLEET_REDIS_* and the Redis URLs (docs/operations.md, 'Redis: password, ACL user, TLS')"


class RedisAuthFailed(DrfleetError):
    hint = ("check the ACL user (DRFLEET_REDIS_USERNAME) and the password file "
            "(DRFLEET_REDIS_PASSWORD_FILE) against the server's requirepass/ACL; the password is never printed")


class RedisUnreachable(DrfleetError):
    hint = "check that the server runs, the host/port, and for rediss:// the CA file and server certificate"


def masked(url: str) -> str:
    """``url`` with any password replaced by ``**`` (safe to log or print)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:**@{host}", parts.path, parts.query, parts.fragment))


def read_secret_file(path: str, what: str) -> str:
    try:
        value = Path(path).read_text().strip()
    except OSError as exc:
        raise RedisConfigInvalid(f"cannot read the {what}: {exc.strerror}", path=path) from None
    if not value:
        raise RedisConfigInvalid(f"the {what} is empty", path=path)
    return value


def with_credentials(url: str, env=os.environ) -> str:
    """``url`` with the configured ACL user and password filled in, unless it carries a
    password already. Raises RedisConfigInvalid when the password file is unreadable or
    empty."""
    password_file = settings.REDIS_PASSWORD_FILE.get(env)
    parts = urlsplit(url)
    if not password_file or parts.password is not None or parts.scheme not in ("redis", "rediss"):
        return url
    password = read_secret_file(password_file, "Redis password file (DRFLEET_REDIS_PASSWORD_FILE)")
    user = settings.REDIS_USERNAME.get(env) or unquote(parts.username or "")
    host = parts.netloc.rsplit("@", 1)[-1]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def tls_options(url: str, env=os.environ) -> dict:
    """The ssl_* connection options for ``url``: empty for redis://, certificate
    verification (and the configured CA/client certificate) for rediss://. Raises
    RedisConfigInvalid when a configured file does not exist."""
    if not url.startswith("rediss://"):
        return {}
    options: dict = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    for setting, option in ((settings.REDIS_CA_FILE, "ssl_ca_certs"), (settings.REDIS_CERT_FILE, "ssl_certfile"),
                            (settings.REDIS_KEY_FILE, "ssl_keyfile")):
        path = setting.get(env)
        if path:
            if not Path(path).is_file():
                raise RedisConfigInvalid(f"{setting.name} names a file that does not exist", path=path)
            options[option] = path
    if ("ssl_certfile" in options) != ("ssl_keyfile" in options):
        raise RedisConfigInvalid("give both DRFLEET_REDIS_CERT_FILE and DRFLEET_REDIS_KEY_FILE, or neither")
    return options


def connect(url: str, env=os.environ, **kwargs) -> redis.Redis:
    """A redis-py client for ``url`` with credentials and TLS applied (not yet connected)."""
    return redis.Redis.from_url(with_credentials(url, env), **tls_options(url, env), **kwargs)


def check_connection(url: str, env=os.environ, *, role: str = "redis", timeout: float = 5.0) -> None:
    """PING ``url`` once. Raises RedisAuthFailed (wrong password, unknown or disabled ACL
    user, or a password the server does not want) or RedisUnreachable (refused, TLS
    handshake or certificate failure), naming the masked URL and never the password."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # once: redis-py would otherwise retry a timed-out PING, tripling the wait
    client = connect(url, env, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0))
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        raise RedisAuthFailed(f"{role}: Redis refused the credentials ({_reason(exc, url, env)})",
                              url=masked(with_credentials(url, env))) from None
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc) or "NOPERM" in str(exc):
            raise RedisAuthFailed(f"{role}: Redis refused the credentials ({_reason(exc, url, env)})",
                                  url=masked(with_credentials(url, env))) from None
        raise
    except (redis.ConnectionError, redis.TimeoutError, ssl.SSLError, OSError) as exc:
        raise RedisUnreachable(f"{role}: cannot connect to Redis ({_reason(exc, url, env)})",
                               url=masked(with_credentials(url, env))) from None
    except redis.RedisError as exc:  # something answers, but not as Redis does (a proxy, HTTP)
        raise RedisUnreachable(f"{role}: the server does not answer as Redis does ({_reason(exc, url, env)})",
                               url=masked(with_credentials(url, env))) from None
    finally:
        client.close()


def _reason(exc: BaseException, url: str, env) -> str:
    """The server's or library's reason with every form of the password scrubbed."""
    text = str(exc) or type(exc).__name__
    secrets = set()
    password = urlsplit(url).password
    if password:
        secrets.add(password)
    if settings.REDIS_PASSWORD_FILE.get(env):
        try:
            secrets.add(Path(settings.REDIS_PASSWORD_FILE.get(env)).read_text().strip())
        except OSError:
            pass
    for secret in filter(None, secrets):
        for form in {secret, quote(secret, safe=""), unquote(secret)}:
            text = text.replace(form, "**")
    return text


def is_redis_failure(exc: BaseException) -> bool:
    from kombu.exceptions import OperationalError
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, (redis.RedisError, OperationalError)):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False
