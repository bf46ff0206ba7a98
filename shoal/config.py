"""One typed configuration model for ``shoal server``: command-line flags > environment > configuration file.

Every setting is declared once, in :class:`ShoalConfig`, with its flag, its environment names and its help text.
The ``server`` command's options, ``shoal config show`` and the README's configuration reference are all made
from these declarations, so they cannot drift apart.

Layering: a scalar setting takes the first value found in the flags, then the environment, then the file. List
settings (users, buckets, CORS origins, seeds) are combined from all three, file first; a bucket declared more
than once is one bucket whose later declarations override the fields they set.

Configuration errors are :class:`ConfigError`: one line naming the setting the way the user wrote it
(``--workers``, ``SHOAL_WORKERS``, ``shoal.toml: buckets[1].cors``). Secrets never appear in them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Literal, cast
from xml.sax.saxutils import escape

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from shoal.crypto.keys import DEFAULT_KMS_KEY_ID

DEV_ROOT_USER = "minioadmin"  # MinIO's development defaults, so existing compose files keep working
DEV_ROOT_PASSWORD = "minioadmin"
MASK = "********"


class ConfigError(Exception):
    """A bad setting: its message is one line, ready to print after ``error: ``."""


def setting(default: Any = None, *, help: str, flag: str | None = None, env: tuple[str, ...] | None = None,
            metavar: str | None = None, multiple: bool = False, secret: bool = False, argument: bool = False,
            default_factory=None, **constraints) -> Any:
    """A field of the model with what the CLI, the environment loader and the docs need to know about it."""
    extra: dict[str, Any] = {"flag": flag, "env": list(env or ()), "metavar": metavar, "multiple": multiple,
                             "secret": secret, "argument": argument}
    if default_factory is not None:
        return Field(default_factory=default_factory, description=help, json_schema_extra=extra, **constraints)
    return Field(default, description=help, json_schema_extra=extra, **constraints)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- declarations: users, buckets, seeds --------------------------------------------------------------------


class UserDecl(_Strict):
    """A user applied at every start: ``AK:SK[:NAME[:ID]]`` or a table with the same fields (and policies)."""

    access_key: str = Field(min_length=1)
    secret_key: SecretStr
    name: str | None = None
    user_id: str | None = None
    policies: list[str | dict] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value):
        if isinstance(value, str):
            fields = value.split(":")
            if len(fields) < 2 or len(fields) > 4 or not fields[0] or not fields[1]:
                raise ValueError(f"expected ACCESS_KEY:SECRET_KEY[:DISPLAY_NAME[:USER_ID]], got {fields[0]}:***")
            return {"access_key": fields[0], "secret_key": fields[1],
                    "name": fields[2] if len(fields) > 2 and fields[2] else None,
                    "user_id": fields[3] if len(fields) > 3 and fields[3] else None}
        return value

    @field_validator("secret_key")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("the secret key must not be empty")
        return value

    @field_validator("policies")
    @classmethod
    def _policies(cls, value: list) -> list:
        from shoal.auth.users import CANNED_NAMES
        from shoal.errors import S3Error
        from shoal.s3 import policy

        for p in value:
            if isinstance(p, str) and p not in CANNED_NAMES:
                raise ValueError(f"unknown policy {p!r}: give one of {', '.join(CANNED_NAMES)} or a document")
            if isinstance(p, dict):
                try:
                    policy.parse(json.dumps(p).encode(), require_principal=False)
                except S3Error as exc:
                    raise ValueError(f"{exc.code}: {exc.message}") from None
        return value


ANONYMOUS = {
    "none": "none", "private": "none",
    "download": "download", "public-read": "download",
    "upload": "upload",
    "public": "public", "public-read-write": "public",
}


class CorsRuleDecl(_Strict):
    allowed_origins: list[str] = Field(min_length=1)
    allowed_methods: list[str] = Field(default_factory=lambda: ["GET", "HEAD"])
    allowed_headers: list[str] = Field(default_factory=list)
    expose_headers: list[str] = Field(default_factory=list)
    max_age_seconds: int | None = None
    id: str | None = None

    def rule(self):
        from shoal.s3.cors import Rule

        return Rule(list(self.allowed_origins), list(self.allowed_methods), list(self.allowed_headers),
                    list(self.expose_headers), self.max_age_seconds, self.id)


class LifecycleRuleDecl(_Strict):
    id: str | None = None
    prefix: str = ""
    status: Literal["Enabled", "Disabled"] = "Enabled"
    expiration_days: int | None = Field(None, gt=0)
    expired_object_delete_marker: bool = False
    noncurrent_days: int | None = Field(None, gt=0)
    abort_incomplete_days: int | None = Field(None, gt=0)

    def xml(self, index: int) -> str:
        parts = [f"<ID>{escape(self.id or f'rule-{index + 1}')}</ID>",
                 f"<Filter><Prefix>{escape(self.prefix)}</Prefix></Filter>", f"<Status>{self.status}</Status>"]
        if self.expiration_days is not None:
            parts.append(f"<Expiration><Days>{self.expiration_days}</Days></Expiration>")
        elif self.expired_object_delete_marker:
            parts.append("<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>")
        if self.noncurrent_days is not None:
            parts.append(f"<NoncurrentVersionExpiration><NoncurrentDays>{self.noncurrent_days}</NoncurrentDays>"
                         "</NoncurrentVersionExpiration>")
        if self.abort_incomplete_days is not None:
            parts.append(f"<AbortIncompleteMultipartUpload><DaysAfterInitiation>{self.abort_incomplete_days}"
                         "</DaysAfterInitiation></AbortIncompleteMultipartUpload>")
        return "<Rule>" + "".join(parts) + "</Rule>"


BUCKET_FLAGS = {"versioned": ("versioning", True), "object-lock": ("object_lock", True),
                "locked": ("object_lock", True)}


class BucketDecl(_Strict):
    """A bucket applied at every start: ``NAME[:OPTION...]`` or a table with these fields."""

    name: str
    versioning: bool | None = None  # True: Enabled; False: Suspended if it was Enabled; None: left alone
    object_lock: bool = False  # only when the bucket is created
    anonymous: str | None = None  # none | download (public-read) | upload | public (public-read-write)
    policy: dict | str | None = None  # a bucket policy document (JSON)
    cors: list[CorsRuleDecl] | None = None
    lifecycle: list[LifecycleRuleDecl] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            name, *options = [p.strip() for p in value.split(":")]
            out: dict[str, Any] = {"name": name}
            for option in options:
                if option in BUCKET_FLAGS:
                    field, flag = BUCKET_FLAGS[option]
                    out[field] = flag
                elif option in ANONYMOUS:
                    out["anonymous"] = option
                else:
                    raise ValueError(f"bucket {name}: unknown option {option!r} (expected one of versioned, "
                                     f"object-lock, {', '.join(ANONYMOUS)})")
            return out
        return value

    @field_validator("anonymous")
    @classmethod
    def _anonymous(cls, value: str | None) -> str | None:
        if value is not None and value not in ANONYMOUS:
            raise ValueError(f"expected one of {', '.join(ANONYMOUS)}")
        return None if value is None else ANONYMOUS[value]

    @model_validator(mode="after")
    def _check(self) -> BucketDecl:
        from shoal.errors import S3Error
        from shoal.s3 import cors, lifecycle, policy
        from shoal.s3.names import check_bucket_name

        try:
            check_bucket_name(self.name)
        except S3Error:
            raise ValueError(f"invalid bucket name {self.name!r}") from None
        if self.policy is not None and self.anonymous is not None:
            raise ValueError(f"bucket {self.name}: set either policy or anonymous, not both")
        try:
            # A document when policy is set or anonymous is not none (at most one of them is: checked above).
            text = self.policy_text()
            if text is not None:
                policy.parse(text.encode(), bucket=self.name)
            if self.cors is not None:
                cors.validate([r.rule() for r in self.cors])
            if self.lifecycle is not None:
                lifecycle.parse_configuration(self.lifecycle_xml().encode())
        except S3Error as exc:
            raise ValueError(f"bucket {self.name}: {exc.code}: {exc.message}") from None
        return self

    def policy_text(self) -> str | None:
        if self.policy is not None:
            return self.policy if isinstance(self.policy, str) else json.dumps(self.policy)
        if self.anonymous in (None, "none"):
            return None
        bucket, objects = f"arn:aws:s3:::{self.name}", f"arn:aws:s3:::{self.name}/*"
        statements = []
        if self.anonymous in ("download", "public"):
            statements += [
                {"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:GetBucketLocation", "s3:ListBucket"],
                 "Resource": [bucket]},
                {"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:GetObject"], "Resource": [objects]}]
        if self.anonymous in ("upload", "public"):
            statements += [
                {"Effect": "Allow", "Principal": {"AWS": ["*"]},
                 "Action": ["s3:GetBucketLocation", "s3:ListBucketMultipartUploads"], "Resource": [bucket]},
                {"Effect": "Allow", "Principal": {"AWS": ["*"]},
                 "Action": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                 "Resource": [objects]}]
        return json.dumps({"Version": "2012-10-17", "Statement": statements})

    def lifecycle_xml(self) -> str:
        rules = "".join(r.xml(i) for i, r in enumerate(self.lifecycle or []))
        return f"<LifecycleConfiguration>{rules}</LifecycleConfiguration>"


class SeedDecl(_Strict):
    """Upload a local directory into a bucket at start (only the files not there yet): ``DIR=BUCKET[/PREFIX]``."""

    dir: str
    bucket: str
    prefix: str = ""

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value):
        if isinstance(value, str):
            directory, sep, target = value.rpartition("=")
            if not sep or not directory or not target:
                raise ValueError(f"expected DIR=BUCKET[/PREFIX], got {value!r}")
            bucket, _, prefix = target.partition("/")
            return {"dir": directory, "bucket": bucket, "prefix": prefix}
        return value

    @model_validator(mode="after")
    def _check(self) -> SeedDecl:
        if not os.path.isdir(self.dir):
            raise ValueError(f"seed directory {self.dir!r} does not exist")
        return self


# -- the model ----------------------------------------------------------------------------------------------

LOG_LEVELS = ("debug", "info", "warning", "error")


class ShoalConfig(_Strict):
    _origins: dict = PrivateAttr(default_factory=dict)  # where each value came from (for messages and `show`)
    _config_path: str | None = PrivateAttr(None)

    data_dir: str = setting("./data", argument=True, metavar="DATA_DIR", env=("SHOAL_DATA_DIR",),
                            help="Where metadata (.shoal/meta.sqlite3) and object files live (created if missing).")
    address: str = setting(":9000", flag="--address", env=("SHOAL_ADDRESS",), metavar="HOST:PORT",
                           help="HOST:PORT to listen on (MinIO's default port).")
    root_user: str | None = setting(flag="--root-user", metavar="ACCESS_KEY",
                                    env=("SHOAL_ROOT_USER", "MINIO_ROOT_USER", "MINIO_ACCESS_KEY"),
                                    help="Root (admin) access key; default minioadmin, with a warning.")
    root_password: SecretStr | None = setting(
        flag="--root-password", metavar="SECRET", secret=True,
        env=("SHOAL_ROOT_PASSWORD", "MINIO_ROOT_PASSWORD", "MINIO_SECRET_KEY"),
        help="Root secret key; default minioadmin, with a warning.")
    users: list[UserDecl] = setting(default_factory=list, flag="--user", env=("SHOAL_USERS",), multiple=True,
                                    metavar="AK:SK[:NAME[:ID]]", secret=True,
                                    help="A further user (independent identity), applied at every start; in the "
                                         "file also with policies (repeatable; env comma-separated).")
    buckets: list[BucketDecl] = setting(
        default_factory=list, flag="--bucket", env=("SHOAL_BUCKETS",), multiple=True, metavar="NAME[:OPTION...]",
        help="A bucket applied at every start, owned by root. Options: versioned, object-lock, public-read "
             "(download), upload, public (public-read-write), private (none). In the file also policy, cors and "
             "lifecycle (repeatable; env comma-separated).")
    seed: list[SeedDecl] = setting(default_factory=list, flag="--seed", env=("SHOAL_SEED",), multiple=True,
                                   metavar="DIR=BUCKET[/PREFIX]",
                                   help="Upload DIR's files into BUCKET at start, skipping keys that exist "
                                        "(repeatable; env comma-separated).")
    domain: str | None = setting(flag="--domain", env=("SHOAL_DOMAIN", "MINIO_DOMAIN"), metavar="DOMAIN",
                                 help="Domain for virtual-hosted-style requests (BUCKET.DOMAIN).")
    region: str = setting("us-east-1", flag="--region", env=("SHOAL_REGION", "MINIO_REGION", "MINIO_REGION_NAME"),
                          metavar="REGION", help="Region reported to clients.")
    workers: int = setting(1, ge=1, le=256, flag="--workers", env=("SHOAL_WORKERS",), metavar="N",
                           help="Worker processes sharing the port (SO_REUSEPORT); they stop when the parent does, "
                                "even if it is killed.")
    event_loop: Literal["auto", "uvloop", "asyncio"] = setting(
        "auto", flag="--event-loop", env=("SHOAL_EVENT_LOOP",), metavar="auto|uvloop|asyncio",
        help="The event loop: uvloop (libuv, ~5-15% less CPU per request) or Python's own; auto takes uvloop when "
             "it is installed (a dependency except on Windows).")
    cors_origins: list[str] = setting(default_factory=list, flag="--cors-origin", env=("SHOAL_CORS_ORIGINS",),
                                      multiple=True, metavar="ORIGIN",
                                      help="Allow browsers from ORIGIN ('*' for any) on buckets without CORS rules "
                                           "of their own (repeatable; env comma-separated).")
    access_log: bool = setting(False, flag="--access-log", env=("SHOAL_ACCESS_LOG",), help="Log every request.")
    log_format: Literal["text", "json"] = setting("text", flag="--log-format", env=("SHOAL_LOG_FORMAT",),
                                                  metavar="text|json", help="Log lines as text or JSON objects.")
    log_level: Literal["debug", "info", "warning", "error"] = setting(
        "info", flag="--log-level", env=("SHOAL_LOG_LEVEL",), metavar="LEVEL",
        help="Least severe messages logged: debug, info, warning or error.")
    metrics: bool = setting(True, flag="--metrics", env=("SHOAL_METRICS",),
                            help="Serve Prometheus metrics at /metrics and /minio/v2/metrics/cluster (no auth).")
    tls_cert: str | None = setting(flag="--tls-cert", env=("SHOAL_TLS_CERT",), metavar="FILE",
                                   help="Serve HTTPS with this certificate chain (PEM); needs --tls-key.")
    tls_key: str | None = setting(flag="--tls-key", env=("SHOAL_TLS_KEY",), metavar="FILE",
                                  help="The certificate's private key (PEM).")
    certs_dir: str | None = setting(flag="--certs-dir", env=("SHOAL_CERTS_DIR",), metavar="DIR",
                                    help="Like MinIO's ~/.minio/certs: serve HTTPS with DIR/public.crt and "
                                         "DIR/private.key.")
    lifecycle_day_seconds: float = setting(
        86400.0, gt=0, flag="--lifecycle-day-seconds", env=("SHOAL_LIFECYCLE_DAY_SECONDS",), metavar="SECONDS",
        help="How many seconds a lifecycle rule's day lasts (scale it down to test rules).")
    lifecycle_interval: float = setting(
        60.0, ge=0, flag="--lifecycle-interval", env=("SHOAL_LIFECYCLE_INTERVAL",), metavar="SECONDS",
        help="Seconds between lifecycle passes (0: no lifecycle worker).")
    scrub_interval: float = setting(
        0.0, ge=0, flag="--scrub-interval", env=("SHOAL_SCRUB_INTERVAL",), metavar="SECONDS",
        help="Seconds between background scrub passes that checksum every blob (0: no background scrub).")
    scrub_rate: float = setting(
        32.0, ge=0, flag="--scrub-rate", env=("SHOAL_SCRUB_RATE",), metavar="MB/S",
        help="MB/s the background scrub may read (0: no limit).")
    verify_reads: bool = setting(
        True, flag="--verify-reads", env=("SHOAL_VERIFY_READS",),
        help="Check each blob's CRC64NVME on full-object reads (small blobs before sending, large ones while "
             "sendfile runs).")
    idle_timeout: float = setting(
        60.0, gt=0, flag="--idle-timeout", env=("SHOAL_IDLE_TIMEOUT",), metavar="SECONDS",
        help="Seconds a connection may go without delivering a complete request head (idle keep-alive "
             "connections and slowloris clients are closed).")
    body_timeout: float = setting(
        60.0, gt=0, flag="--body-timeout", env=("SHOAL_BODY_TIMEOUT",), metavar="SECONDS",
        help="Seconds a client may stall mid-transfer: a request body that stops arriving fails with "
             "RequestTimeout; a response it stops reading is cut off.")
    master_key: SecretStr | None = setting(
        flag="--master-key", env=("SHOAL_MASTER_KEY",), metavar="BASE64", secret=True,
        help="Server-side encryption master key (base64 of 32 bytes). Default: generated once in "
             "DATA_DIR/.shoal/master.key.")
    kms_default_key_id: str = setting(DEFAULT_KMS_KEY_ID, flag="--kms-default-key-id",
                                      env=("SHOAL_KMS_DEFAULT_KEY_ID",), metavar="ID",
                                      help="KMS key id used for aws:kms requests that name none.")

    # -- validation -----------------------------------------------------------------------------------------

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        parse_address(value)
        return value

    @field_validator("master_key")
    @classmethod
    def _master_key(cls, value: SecretStr | None) -> SecretStr | None:
        from shoal.crypto.keys import parse_master_key

        if value is not None and value.get_secret_value():
            parse_master_key(value.get_secret_value())  # ValueError names the problem, never the key
        return value or None

    @field_validator("tls_cert", "tls_key")
    @classmethod
    def _file(cls, value: str | None) -> str | None:
        if value and not os.path.isfile(value):
            raise ValueError(f"no such file: {value}")
        return value or None

    @field_validator("certs_dir")
    @classmethod
    def _certs_dir(cls, value: str | None) -> str | None:
        if value:
            for name in ("public.crt", "private.key"):
                if not os.path.isfile(os.path.join(value, name)):
                    raise ValueError(f"{os.path.join(value, name)} is missing")
        return value or None

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value):
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> ShoalConfig:
        if bool(self.root_user) != bool(self.root_password and self.root_password.get_secret_value()):
            raise ValueError("root_user and root_password: set both (--root-user/--root-password, "
                             "SHOAL_ROOT_USER/SHOAL_ROOT_PASSWORD or MINIO_ROOT_USER/MINIO_ROOT_PASSWORD), or neither")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key: set both (--tls-cert and --tls-key), or neither")
        if self.tls_cert and self.certs_dir:
            raise ValueError("set either --tls-cert/--tls-key or --certs-dir, not both")
        self.buckets = merge_buckets(self.buckets)
        known = {b.name for b in self.buckets}
        for seed in self.seed:
            if seed.bucket not in known:
                self.buckets.append(BucketDecl(name=seed.bucket))
                known.add(seed.bucket)
        return self

    # -- derived --------------------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return parse_address(self.address)[0]

    @property
    def port(self) -> int:
        return parse_address(self.address)[1]

    def tls_files(self) -> tuple[str, str] | None:
        if self.tls_cert and self.tls_key:
            return self.tls_cert, self.tls_key
        if self.certs_dir:
            return os.path.join(self.certs_dir, "public.crt"), os.path.join(self.certs_dir, "private.key")
        return None

    def server_settings(self):
        from shoal.server import ServerSettings, UserSpec

        return ServerSettings(
            data_dir=self.data_dir, host=self.host, port=self.port,
            root_user=self.root_user or DEV_ROOT_USER,
            root_password=self.root_password.get_secret_value() if self.root_password else DEV_ROOT_PASSWORD,
            users=[UserSpec(u.access_key, u.secret_key.get_secret_value(), name=u.name, user_id=u.user_id,
                            policies=list(u.policies)) for u in self.users],
            buckets=list(self.buckets), seeds=list(self.seed), domain=self.domain, region=self.region,
            workers=self.workers, event_loop=self.event_loop, access_log=self.access_log,
            log_format=self.log_format, log_level=self.log_level,
            lifecycle_day_seconds=self.lifecycle_day_seconds, lifecycle_interval=self.lifecycle_interval,
            scrub_interval=self.scrub_interval, scrub_rate=self.scrub_rate * 1e6 if self.scrub_rate else None,
            verify_reads=self.verify_reads, idle_timeout=self.idle_timeout, body_timeout=self.body_timeout,
            cors_origins=list(self.cors_origins),
            master_key=self.master_key.get_secret_value() if self.master_key else None,
            kms_default_key_id=self.kms_default_key_id, tls=self.tls_files(), metrics=self.metrics,
        )

    def masked(self) -> dict:
        """The effective configuration as plain data, every secret replaced by a mask."""
        data = self.model_dump(mode="json")
        for name in ("root_password", "master_key"):
            if data.get(name):
                data[name] = MASK
        for user in data["users"]:
            user["secret_key"] = MASK
        return data


def merge_buckets(decls: list[BucketDecl]) -> list[BucketDecl]:
    """One declaration per bucket name: later ones override the fields they set, in first-seen order."""
    merged: dict[str, BucketDecl] = {}
    for decl in decls:
        if decl.name in merged:
            base = merged[decl.name]
            update = {f: getattr(decl, f) for f in decl.model_fields_set if f != "name"}
            merged[decl.name] = base.model_copy(update=update)
        else:
            merged[decl.name] = decl
    return list(merged.values())


def parse_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        raise ValueError(f"expected HOST:PORT or :PORT, got {value!r}")
    host = host.strip("[]") or "0.0.0.0"
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"port must be a number, got {port!r}") from None
    if not 0 < number < 65536:
        raise ValueError(f"port out of range: {number}")
    return host, number


# -- loading ------------------------------------------------------------------------------------------------


def settings_info() -> dict[str, dict]:
    """name -> {flag, env, metavar, multiple, secret, argument, help, default} for every setting."""
    out = {}
    for name, f in ShoalConfig.model_fields.items():
        extra = dict(f.json_schema_extra or {})  # type: ignore[arg-type]
        default = f.get_default(call_default_factory=True)
        out[name] = extra | {"help": f.description or "", "default": default,
                             "is_bool": f.annotation is bool}
    return out


ENV_NAMES = {env: name for name, info in settings_info().items() for env in info["env"]}
CONFIG_ENV = "SHOAL_CONFIG"


def read_file(path: str) -> dict:
    """A TOML (.toml) or YAML (.yaml/.yml, or anything else) configuration file as a dict."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
    try:
        if path.endswith(".toml"):
            import tomllib

            data = tomllib.loads(raw.decode())
        else:
            import yaml

            data = yaml.safe_load(raw) or {}
    except Exception as exc:  # tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"config file {path}: cannot parse: {first}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a table of settings at the top level")
    info = settings_info()
    for key in data:
        if key not in info:
            raise ConfigError(f"config file {path}: unknown setting {key!r}")
    return data


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def load(flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
         config_path: str | None = None) -> ShoalConfig:
    """The effective configuration: ``flags`` (None/empty: not given) > ``env`` > the configuration file."""
    flags = dict(flags or {})
    env = os.environ if env is None else env
    config_path = config_path or env.get(CONFIG_ENV) or None
    info = settings_info()
    file_data = read_file(config_path) if config_path else {}
    file_label = os.path.basename(config_path) if config_path else ""

    values: dict[str, Any] = {}
    origins: dict[str, Any] = {}  # name -> label, or list of labels (one per item) for list settings
    for name, meta in info.items():
        flag_label = meta["flag"] or meta["metavar"]
        flag_value = flags.get(name)
        env_hit = next(((e, env[e]) for e in meta["env"] if env.get(e, "") != ""), None)
        if meta["multiple"]:
            items: list = []
            labels: list[str] = []
            file_value = file_data.get(name)
            if file_value is not None:
                file_items = file_value if isinstance(file_value, list) else [file_value]
                items += file_items
                labels += [f"{file_label}: {name}[{i}]" for i in range(len(file_items))]
            if env_hit is not None:
                env_items = _split(env_hit[1])
                items += env_items
                labels += [env_hit[0]] * len(env_items)
            if flag_value:
                items += list(flag_value)
                labels += [flag_label] * len(flag_value)
            values[name] = items
            origins[name] = labels
        elif flag_value is not None:
            values[name], origins[name] = flag_value, flag_label
        elif env_hit is not None:
            values[name], origins[name] = env_hit[1], env_hit[0]
        elif name in file_data:
            values[name], origins[name] = file_data[name], f"{file_label}: {name}"
    try:
        config = ShoalConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, origins)) from None
    config._origins = origins
    config._config_path = config_path
    return config


def _one_line(exc: ValidationError, origins: dict[str, Any]) -> str:
    err = exc.errors(include_input=False, include_url=False)[0]
    loc = list(err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    message = message.replace("\n", " ")
    if not loc:
        return f"invalid configuration: {message}"
    name = loc.pop(0)
    origin = origins.get(name, name) if isinstance(name, str) else name  # origins is keyed by field names
    if isinstance(origin, list):
        index = cast(int, loc.pop(0)) if loc and isinstance(loc[0], int) else 0
        origin = origin[index] if index < len(origin) else name
    rest = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
    # A tagged union (str | dict) reports the branch it tried; that is noise for the reader.
    rest = rest.replace(".str", "").replace(".dict[any,any]", "").replace(".function-before[_from_text(), "
                                                                           "BucketDecl]", "")
    return f"invalid setting {origin}{rest}: {message}"


def origin_of(config: ShoalConfig, name: str) -> str:
    origin = config._origins.get(name)
    if isinstance(origin, list):
        kinds = sorted({o.split(":")[0].split("[")[0] for o in origin})
        return ", ".join(kinds) if kinds else "default"
    return origin or "default"


def render_show(config: ShoalConfig) -> str:
    """``shoal config show``: each setting, its effective value (secrets masked) and where it came from."""
    data = config.masked()
    path = config._config_path
    lines = [f"# configuration file: {path or '(none)'}"]
    width = max(len(n) for n in data)
    for name, value in data.items():
        if name == "root_user" and value is None:
            value = f"{DEV_ROOT_USER} (development default)"
        if name == "root_password" and value is None:
            value = f"{MASK} (development default)"
        text = json.dumps(value, separators=(", ", ": ")) if not isinstance(value, str) else value
        lines.append(f"{name.ljust(width)} = {text}    [{origin_of(config, name)}]")
    return "\n".join(lines)


def reference_markdown() -> str:
    """The README's configuration reference table."""
    rows = ["| setting (file key) | flag | environment | default | meaning |", "| --- | --- | --- | --- | --- |"]
    for name, meta in settings_info().items():
        flag = f"`{meta['metavar']}` (argument)" if meta["argument"] else f"`{meta['flag']}`"
        if meta["is_bool"]:
            flag = f"`{meta['flag']}` / `--no-{meta['flag'][2:]}`"
        elif meta["metavar"] and not meta["argument"]:
            flag = f"`{meta['flag']} {meta['metavar']}`"
        if meta["multiple"]:
            flag += " (repeatable)"
        env = ", ".join(f"`{e}`" for e in meta["env"])
        default = meta["default"]
        if isinstance(default, bool):
            default = str(default).lower()
        default = "" if default in (None, [], "") else f"`{default}`"
        # A | splits a table cell even inside a code span (GitHub's Markdown): escaped.
        flag = flag.replace("|", "\\|")
        rows.append(f"| `{name}` | {flag} | {env} | {default} | {meta['help'].replace('|', '/')} |")
    return "\n".join(rows)
