"""Every environment variable of the operations guide (§4.1) as one typed Settings object.

This is the only module that reads the process environment. Durations accept the guide's
forms (``30s``, ``15m``, ``1h``, ``7d``); every secret may also be read from ``NAME_FILE``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

Environment = Literal["development", "test", "staging", "production"]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+asyncpg://")
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

#: Secrets that ship in examples (the guide's own, and ours for development). Production
#: refuses to start with any of them.
KNOWN_DEFAULT_SECRETS = frozenset(
    {
        "your-secret-key",
        "password",
        "secret",
        "changeme",
        "change-me",
        "key",
        "dev-only-insecure-jwt-secret-change-me",
    }
)
DEV_JWT_SECRET = "dev-only-insecure-jwt-secret-change-me"  # noqa: S105 - refused outside dev/test

SECRET_FIELDS = (
    "database_url",
    "redis_url",  # may carry a password (redis://:pw@host); masked like DATABASE_URL
    "redis_password",
    "jwt_secret",
    "smtp_pass",
    "aws_secret_access_key",
    "aws_access_key_id",
    "datadog_api_key",
    "sentry_dsn",
    "metrics_token",
)


def parse_duration(value: Any) -> Any:
    """Turn ``1h``/``7d``/``30s``/``250ms`` (or a bare number of seconds) into a timedelta."""
    if isinstance(value, timedelta | int | float):
        return value if isinstance(value, timedelta) else timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError("expected a duration such as 30s, 15m, 1h or 7d")
        amount, unit = int(match.group(1)), match.group(2) or "s"
        return timedelta(seconds=amount * _UNIT_SECONDS[unit])
    return value


def _positive(value: timedelta) -> timedelta:
    if value.total_seconds() <= 0:
        raise ValueError("must be longer than zero")
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_positive)]


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


# NoDecode: the environment gives `a,b` (not JSON); the validator splits it.
CommaList = Annotated[list[str], NoDecode, BeforeValidator(_comma_list)]


class _SecretFileSource(PydanticBaseSettingsSource):
    """Reads ``NAME_FILE`` (Docker/Kubernetes secret files) for every secret setting."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        path = os.environ.get(f"{field_name.upper()}_FILE")
        if field_name not in SECRET_FIELDS or not path:
            return None, field_name, False
        try:
            return Path(path).read_text(encoding="utf-8").strip(), field_name, False
        except OSError as exc:
            raise ValueError(f"{field_name.upper()}_FILE: cannot read {path}: {exc.strerror}") from exc

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = value
        return values


class Settings(BaseSettings):
    """The effective configuration; built once at start and passed down."""

    model_config = SettingsConfigDict(
        env_prefix="",
        case_sensitive=False,
        extra="ignore",
        env_ignore_empty=True,
        env_parse_none_str=None,
    )

    # Application
    hims_env: Environment = Field("development", description="Deployment environment (the guide's NODE_ENV).")
    port: int = Field(3000, ge=1, le=65535, description="HTTP port of `hims serve`.")
    host: str = Field("127.0.0.1", description="Interface `hims serve` binds to (0.0.0.0 in containers).")
    api_version: str = Field("v1", pattern=r"^v\d+$", description="API routes live under /api/{API_VERSION}.")
    hims_data_dir: Path = Field(
        Path("var"), description="Where the embedded database, files and runtime state live."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")

    # Database
    database_url: SecretStr | None = Field(
        None, description="PostgreSQL URL. Unset: an embedded PostgreSQL runs under HIMS_DATA_DIR/postgres."
    )
    database_read_urls: CommaList = Field(
        default_factory=list, description="Comma-separated read-replica URLs used for read-only queries."
    )
    database_max_connections: int = Field(
        20,
        ge=1,
        le=1000,
        description="Connection pool size per process (requests wait for one in arrival order). "
        "Size the total over all processes to a few times the database's cores.",
    )
    database_idle_timeout: int = Field(
        30000, ge=1000, description="Milliseconds before an idle pooled connection is closed by the server."
    )

    # Redis
    redis_url: str | None = Field(
        None,
        description="Redis URL for cache, rate limits, revocations and jobs; unset: in-process only.",
    )
    redis_password: SecretStr | None = Field(None, description="Redis password, if not in REDIS_URL.")

    # JWT
    jwt_secret: SecretStr = Field(SecretStr(DEV_JWT_SECRET), description="HS256 signing key for tokens.")
    jwt_expires_in: Duration = Field(timedelta(hours=1), description="Access token lifetime.")
    jwt_refresh_expires_in: Duration = Field(timedelta(days=7), description="Refresh token lifetime.")

    # Identity (guide §8.2: fail2ban maxretry=3 / bantime=3600, done in the app for HIMS logins)
    login_max_failures: int = Field(
        3, ge=1, le=100, description="Failed logins per account, or per client IP, before a lockout."
    )
    login_lockout_seconds: int = Field(
        3600, ge=1, description="How long a locked account or IP is refused (seconds)."
    )
    password_reset_ttl: Duration = Field(
        timedelta(minutes=30), description="Lifetime of a single-use password-reset link."
    )
    mfa_required_roles: CommaList = Field(
        default_factory=lambda: ["admin", "operator"],
        description="Roles that must use TOTP MFA in production and staging.",
    )
    session_ttl: Duration = Field(timedelta(hours=8), description="Lifetime of a browser session cookie.")
    public_url: str = Field(
        "http://localhost:3000", description="Public base URL of the app (used in password-reset e-mails)."
    )
    password_hash_time_cost: int = Field(2, ge=1, le=20, description="argon2id iterations.")
    password_hash_memory_kib: int = Field(
        19456, ge=1024, le=4194304, description="argon2id memory cost in KiB (19 MiB: OWASP minimum)."
    )
    password_hash_parallelism: int = Field(1, ge=1, le=16, description="argon2id lanes.")

    # External services
    smtp_host: str | None = Field(None, description="SMTP server for outgoing mail.")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port.")
    smtp_user: str | None = Field(None, description="SMTP user name.")
    smtp_pass: SecretStr | None = Field(None, description="SMTP password.")
    smtp_from: str = Field("hims@localhost", description="Sender address of outgoing mail.")
    smtp_starttls: bool = Field(False, description="Use STARTTLS with the SMTP server.")

    # AWS / storage
    aws_region: str | None = Field(None, description="AWS region for S3 storage.")
    aws_access_key_id: SecretStr | None = Field(None, description="AWS access key id.")
    aws_secret_access_key: SecretStr | None = Field(None, description="AWS secret access key.")
    storage_backend: Literal["local", "s3"] = Field("local", description="Where uploaded files are kept.")
    storage_s3_bucket: str | None = Field(None, description="Bucket for STORAGE_BACKEND=s3.")
    storage_s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO etc.).")
    document_max_bytes: int = Field(
        20 * 1024 * 1024, ge=1, description="Largest document upload accepted, in bytes (default 20 MiB)."
    )

    # Monitoring
    sentry_dsn: SecretStr | None = Field(None, description="Sentry DSN (install the [sentry] extra).")
    datadog_api_key: SecretStr | None = Field(
        None, description="Datadog API key (metrics are also on /metrics)."
    )
    otel_enabled: bool = Field(
        False,
        description="Trace requests with OpenTelemetry (install the [otel] extra; OTEL_* configure it).",
    )
    metrics_token: SecretStr | None = Field(None, description="Bearer token required on /metrics.")
    metrics_allow_networks: CommaList = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="Networks allowed to read /metrics without the token.",
    )

    # Feature flags (guide §4.1)
    feature_adaptive_consultation: bool = Field(False, description="Adaptive consultation questionnaires.")
    feature_telemedicine: bool = Field(False, description="Video visits.")
    feature_ai_diagnosis: bool = Field(False, description="Decision-support suggestions.")
    feature_advanced_analytics: bool = Field(False, description="Advanced analytics dashboards.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Init arguments win, then the environment, then ``NAME_FILE`` secret files."""
        return (init_settings, env_settings, _SecretFileSource(settings_cls))

    @field_validator("database_url", mode="after")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(_POSTGRES_SCHEMES):
            raise ValueError("must be a postgresql:// URL (PostgreSQL is the only supported database)")
        return value

    @field_validator("database_read_urls", mode="after")
    @classmethod
    def _postgres_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(_POSTGRES_SCHEMES):
                raise ValueError("every entry must be a postgresql:// URL")
        return value

    @field_validator("redis_url", mode="after")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("database_read_urls", "metrics_allow_networks", mode="after")
    @classmethod
    def _no_empty(cls, value: list[str]) -> list[str]:
        return [v for v in value if v]

    @field_validator("metrics_allow_networks", mode="after")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not a network such as 10.0.0.0/8") from None
        return value

    @property
    def is_production(self) -> bool:
        """Production and staging get every safety check."""
        return self.hims_env in ("production", "staging")

    @property
    def api_prefix(self) -> str:
        """The versioned REST prefix, e.g. ``/api/v1``."""
        return f"/api/{self.api_version}"

    @property
    def embedded_database(self) -> bool:
        """True when no DATABASE_URL is set and `hims` runs its own PostgreSQL."""
        return self.database_url is None

    def problems(self) -> list[str]:
        """Every reason this configuration must not run in its environment, one line each."""
        found: list[str] = []
        if self.is_production:
            for name in ("jwt_secret",):
                value = getattr(self, name)
                if value is None or value.get_secret_value() in KNOWN_DEFAULT_SECRETS:
                    found.append(f"{name.upper()}: missing or a known default secret; set a random value")
                elif len(value.get_secret_value()) < 32:
                    found.append(f"{name.upper()}: must be at least 32 characters in {self.hims_env}")
            for name in ("redis_password", "smtp_pass", "aws_secret_access_key"):
                value = getattr(self, name)
                if value is not None and value.get_secret_value() in KNOWN_DEFAULT_SECRETS:
                    found.append(f"{name.upper()}: is a known default secret")
            if self.database_url is None:
                found.append("DATABASE_URL: required in production (the embedded database is for laptops)")
            else:
                password = _url_password(self.database_url.get_secret_value())
                if password in KNOWN_DEFAULT_SECRETS:
                    found.append("DATABASE_URL: its password is a known default secret")
            if self.redis_url is None:
                found.append("REDIS_URL: required in production (the in-process fallback is single-replica)")
        if self.storage_backend == "s3" and not self.storage_s3_bucket:
            found.append("STORAGE_S3_BUCKET: required when STORAGE_BACKEND=s3")
        return found


def _url_password(url: str) -> str | None:
    match = re.match(r"^[a-z0-9+]+://[^:/@]*:([^@]*)@", url)
    return match.group(1) if match else None


def mask_url(url: str) -> str:
    """Hide the password of a connection URL (``postgresql://u:***@host/db``)."""
    return re.sub(r"^([a-z0-9+]+://[^:/@]*):[^@]*@", r"\1:***@", url)


class SettingsError(Exception):
    """The environment does not make a valid configuration; one line per problem."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment, turning validation errors into named lines."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = str(error["loc"][0]).upper() if error["loc"] else "SETTINGS"
            lines.append(f"{name}: {error['msg']}")
        raise SettingsError(lines) from None
    except SettingsError:
        raise
    except ValueError as exc:  # unreadable NAME_FILE, undecodable value
        raise SettingsError([str(exc)]) from None
