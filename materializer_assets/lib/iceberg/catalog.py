"""The Iceberg catalog: where it is configured, how it is loaded, and the ``.pyiceberg.yaml`` published for other tools.

Done the pyiceberg way: a catalog named ``materializer`` (configurable)
is looked up in ``.pyiceberg.yaml`` and ``PYICEBERG_CATALOG__MATERIALIZER__*``
environment variables (read fresh on every call), with explicit properties on
top. When none of them say anything, the default is a ``SqlCatalog`` on SQLite
inside the warehouse: ``<warehouse>/iceberg/catalog.db``, table data under
``<warehouse>/iceberg``. SQLite cannot live on S3, so with an ``s3://``
warehouse the default keeps the SQLite file on local disk
(``.materializer/iceberg/<hash of the warehouse URI>/catalog.db``) and the data on S3; anything shared by
several machines should configure a Postgres ``SqlCatalog``, Glue or REST.
:func:`publish_default_catalog` writes that default into a ``.pyiceberg.yaml``
in the working directory, so other tools open it with pyiceberg's own
``load_catalog("materializer")``; such a file is written for them and never
read back as configuration (a changed warehouse still moves the default).
Messages about a catalog never show a secret (:func:`describe_properties`).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from pyiceberg.catalog import Catalog

from ..storage import S3Options, is_s3_uri, resolve
from .base import CatalogConfigError

DEFAULT_CATALOG_NAME = "materializer"
ICEBERG_DIR = "iceberg"
SQLITE_FILE = "catalog.db"
LOCAL_CATALOG_DIR_FOR_S3 = ".materializer/iceberg"


@dataclass(frozen=True)
class CatalogSettings:
    """Where the catalog is; empty ``properties`` and no pyiceberg config means the default."""

    name: str = DEFAULT_CATALOG_NAME
    properties: Mapping[str, str] = field(default_factory=dict)
    warehouse: str = ".materializer/warehouse"
    s3: S3Options | None = None
    # Where the default SQLite catalog lives when the warehouse is on S3.
    local_catalog_dir: str = LOCAL_CATALOG_DIR_FOR_S3


PYICEBERG_CONFIG_FILE = ".pyiceberg.yaml"
# First line of a .pyiceberg.yaml that publish_default_catalog wrote: while it is there the file
# is ours to rewrite, and it is not read back as configuration.
PUBLISHED_CONFIG_MARKER = "# Written by `materializer run`"
_PUBLISHED_CONFIG_HEADER = (
    f"{PUBLISHED_CONFIG_MARKER}: the default Iceberg catalog of this folder, so that pyiceberg's\n"
    "# load_catalog(NAME) opens its tables. It is rewritten when that default changes; delete these\n"
    "# lines to keep the file as yours (it is then the catalog's configuration).\n"
)


def pyiceberg_config_file() -> str | None:
    """The ``.pyiceberg.yaml`` pyiceberg reads: the first of ``$PYICEBERG_HOME``, ``~`` and the
    working directory that holds one (the order of ``pyiceberg.utils.config.Config``, 0.12)."""
    for directory in (os.environ.get("PYICEBERG_HOME"), os.path.expanduser("~"), os.getcwd()):
        if directory and os.path.isfile(os.path.join(directory, PYICEBERG_CONFIG_FILE)):
            return os.path.join(directory, PYICEBERG_CONFIG_FILE)
    return None


def is_published_config(path: str) -> bool:
    """True for a ``.pyiceberg.yaml`` that :func:`publish_default_catalog` wrote (and nobody claimed)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.readline().startswith(PUBLISHED_CONFIG_MARKER)
    except OSError:
        return False


def pyiceberg_config(name: str) -> dict[str, Any]:
    """The named catalog's properties from ``.pyiceberg.yaml`` and ``PYICEBERG_CATALOG__*``, read now.

    (pyiceberg reads its environment once at import; reading it again here lets
    a process that sets the variables later, e.g. a test or a launcher, work.)
    A file :func:`publish_default_catalog` wrote only mirrors the default: then
    only the environment variables count.
    """
    from pyiceberg.utils.config import Config

    config_file = pyiceberg_config_file()
    if config_file and is_published_config(config_file):
        # pyiceberg's own parsing of PYICEBERG_* (a private static method of 0.12; pinned <0.13).
        catalogs = Config._from_environment_variables({}).get("catalog") or {}
        return dict(catalogs.get(name.lower()) or {})
    return dict(Config().get_catalog_config(name) or {})


@dataclass(frozen=True)
class PublishedCatalog:
    """What :func:`publish_default_catalog` did: ``written``, ``unchanged``, ``configured`` (the
    catalog is not the default: pyiceberg's config already has it) or ``shadowed`` (pyiceberg reads
    another ``.pyiceberg.yaml`` first, which is left alone); ``path`` is the file concerned."""

    status: str
    path: str | None
    properties: Mapping[str, str] = field(default_factory=dict)


def publish_default_catalog(settings: CatalogSettings) -> PublishedCatalog:
    """Write the default catalog as ``catalog.<name>`` into ``./.pyiceberg.yaml`` for other readers.

    Never touches a ``.pyiceberg.yaml`` someone else wrote, never writes a secret (credentials come
    from the environment, as for the pipeline), and only when the catalog is the default one.
    """
    import yaml

    properties, origin = resolve_catalog_properties(settings)
    if origin != "default SQLite catalog":
        return PublishedCatalog("configured", pyiceberg_config_file())
    target = os.path.join(os.getcwd(), PYICEBERG_CONFIG_FILE)
    found = pyiceberg_config_file()
    if found is not None and (found != target or not is_published_config(found)):
        return PublishedCatalog("shadowed", found)
    public = {key: value for key, value in properties.items() if not _is_secret_key(key)}
    text = _PUBLISHED_CONFIG_HEADER.replace("NAME", f'"{settings.name}"') + yaml.safe_dump(
        {"catalog": {settings.name.lower(): public}}, default_flow_style=False, sort_keys=True
    )
    if found is not None:
        with open(found, encoding="utf-8") as handle:
            if handle.read() == text:
                return PublishedCatalog("unchanged", target, public)
    partial = f"{target}.{uuid.uuid4().hex}.tmp"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(partial, target)  # readers see the old file or the new one, never half of it
    return PublishedCatalog("written", target, public)


def default_catalog_properties(settings: CatalogSettings) -> dict[str, str]:
    """A ``SqlCatalog`` on SQLite: inside a local warehouse, or local beside an S3 one."""
    warehouse = settings.warehouse.strip() or ".materializer/warehouse"
    if is_s3_uri(warehouse):
        location = resolve(warehouse)  # validates the bucket
        # One SQLite file per S3 warehouse: two warehouses must never share table entries.
        warehouse_key = hashlib.sha256(location.uri.encode()).hexdigest()[:12]
        catalog_dir = os.path.join(os.path.abspath(os.path.expanduser(settings.local_catalog_dir)), warehouse_key)
        os.makedirs(catalog_dir, exist_ok=True)
        properties = {
            "type": "sql",
            "uri": f"sqlite:///{catalog_dir}/{SQLITE_FILE}",
            "warehouse": f"{location.uri}/{ICEBERG_DIR}",
        }
        properties.update(s3_properties(settings.s3))
        return properties
    root = os.path.abspath(os.path.expanduser(warehouse.removeprefix("file://")))
    os.makedirs(os.path.join(root, ICEBERG_DIR), exist_ok=True)
    return {
        "type": "sql",
        "uri": f"sqlite:///{root}/{ICEBERG_DIR}/{SQLITE_FILE}",
        "warehouse": f"file://{root}/{ICEBERG_DIR}",
    }


def s3_properties(options: S3Options | None) -> dict[str, str]:
    """pyiceberg FileIO properties for an S3-compatible endpoint (pyarrow ignores AWS_ENDPOINT_URL)."""
    opts = (options or S3Options()).merged_with_env()
    properties = {}
    if opts.endpoint_url:
        properties["s3.endpoint"] = opts.endpoint_url
    if opts.region:
        properties["s3.region"] = opts.region
    if opts.access_key_id and opts.secret_access_key:
        properties["s3.access-key-id"] = opts.access_key_id
        properties["s3.secret-access-key"] = opts.secret_access_key
        if opts.session_token:
            properties["s3.session-token"] = opts.session_token
    return properties


def resolve_catalog_properties(settings: CatalogSettings) -> tuple[dict[str, str], str]:
    """(properties, where they came from): explicit + pyiceberg config, or the default."""
    configured = pyiceberg_config(settings.name)
    explicit = {key: str(value) for key, value in settings.properties.items() if value not in (None, "")}
    merged = {**configured, **explicit}
    if merged:
        origin = "resource config" if explicit and not configured else "pyiceberg config"
        if explicit and configured:
            origin = "pyiceberg config + resource config"
        return merged, origin
    return default_catalog_properties(settings), "default SQLite catalog"


def load_catalog(settings: CatalogSettings | None = None) -> Catalog:
    """The catalog, loaded with pyiceberg's own ``load_catalog``."""
    from pyiceberg.catalog import load_catalog as pyiceberg_load_catalog

    settings = settings or CatalogSettings()
    properties, origin = resolve_catalog_properties(settings)
    try:
        return pyiceberg_load_catalog(settings.name, **properties)
    except Exception as exc:  # connection errors too: the message must name the catalog, not its secrets
        shown = describe_properties(properties)
        raise CatalogConfigError(
            f"cannot load Iceberg catalog {settings.name!r} from the {origin} ({shown}): "
            f"{type(exc).__name__}: {_scrub(str(exc).splitlines()[0] if str(exc) else '', properties)}"
        ) from None


_SECRET_KEY_HINTS = ("secret", "password", "token", "credential", "key-id", "access-key")


def _is_secret_key(key: str) -> bool:
    return any(hint in key.lower() for hint in _SECRET_KEY_HINTS)


def describe_properties(properties: Mapping[str, Any]) -> str:
    """Catalog properties for logs and messages: secrets and URL passwords hidden."""
    from ..registry import redact_url

    shown = []
    for key in sorted(properties):
        value = str(properties[key])
        if _is_secret_key(key):
            value = "***"
        elif "://" in value:
            value = redact_url(value)
        shown.append(f"{key}={value}")
    return ", ".join(shown)


def _scrub(message: str, properties: Mapping[str, Any]) -> str:
    """``message`` with every secret property value and URL password replaced by ***."""
    from urllib.parse import urlparse

    for key, value in properties.items():
        value = str(value)
        if _is_secret_key(key) and value:
            message = message.replace(value, "***")
        if "://" in value:
            password = urlparse(value).password
            if password:
                message = message.replace(password, "***")
    return message


def split_identifier(identifier: str | Sequence[str]) -> tuple[str, str]:
    parts = identifier.split(".") if isinstance(identifier, str) else list(identifier)
    if len(parts) < 2 or not all(parts):
        raise CatalogConfigError(f"an Iceberg table is named namespace.table, got {identifier!r}")
    return ".".join(parts[:-1]), parts[-1]
