"""Where files live: a local folder or ``s3://bucket/prefix`` on any S3 endpoint.

pyarrow's ``S3FileSystem`` ignores ``AWS_ENDPOINT_URL`` unless told
(DESIGN §9), so the endpoint is passed explicitly; credentials follow AWS's
standard chain (environment, profile, instance role) unless given.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from urllib.parse import urlparse

import pyarrow.fs as pafs


@dataclass(frozen=True)
class S3Options:
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None

    @classmethod
    def from_env(cls) -> "S3Options":
        return cls(
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None,
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
        )

    def merged_with_env(self) -> "S3Options":
        env = S3Options.from_env()
        return S3Options(
            endpoint_url=self.endpoint_url or env.endpoint_url,
            region=self.region or env.region,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            session_token=self.session_token,
        )


@dataclass(frozen=True)
class Location:
    """A filesystem and a path on it (no scheme: ``bucket/key`` or ``/abs/dir``)."""

    filesystem: pafs.FileSystem
    path: str
    uri: str

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    def join(self, *parts: str) -> "Location":
        path = posixpath.join(self.path, *parts)
        uri = posixpath.join(self.uri, *parts)
        return Location(self.filesystem, path, uri)


def is_s3_uri(uri: str) -> bool:
    return uri.startswith(("s3://", "s3a://"))


def s3_filesystem(options: S3Options | None = None) -> pafs.S3FileSystem:
    opts = (options or S3Options()).merged_with_env()
    kwargs: dict = {}
    if opts.endpoint_url:
        parsed = urlparse(opts.endpoint_url)
        kwargs["endpoint_override"] = parsed.netloc or parsed.path
        kwargs["scheme"] = parsed.scheme or "https"
    if opts.region:
        kwargs["region"] = opts.region
    if opts.access_key_id and opts.secret_access_key:
        kwargs["access_key"] = opts.access_key_id
        kwargs["secret_key"] = opts.secret_access_key
        if opts.session_token:
            kwargs["session_token"] = opts.session_token
    return pafs.S3FileSystem(**kwargs)


def resolve(uri: str, s3_options: S3Options | None = None) -> Location:
    """A :class:`Location` for a local path or an ``s3://`` URI."""
    if is_s3_uri(uri):
        parsed = urlparse(uri)
        if not parsed.netloc:
            raise ValueError(f"S3 URI without a bucket: {uri!r}")
        path = f"{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/")
        return Location(s3_filesystem(s3_options), path, f"s3://{path}")
    if "://" in uri and not uri.startswith("file://"):
        raise ValueError(f"unsupported storage URI {uri!r}: use a local path or s3://bucket/prefix")
    local = os.path.abspath(os.path.expanduser(uri.removeprefix("file://")))
    return Location(pafs.LocalFileSystem(), local, local)


def list_files(location: Location, suffixes: tuple[str, ...] = ()) -> list[str]:
    """Files under ``location`` (recursively), sorted, skipping hidden and ``_`` names."""
    selector = pafs.FileSelector(location.path, recursive=True, allow_not_found=True)
    files = []
    for info in location.filesystem.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        relative = posixpath.relpath(info.path, location.path)
        if any(part.startswith((".", "_")) for part in relative.split("/")):
            continue
        if suffixes and not info.path.endswith(suffixes):
            continue
        files.append(info.path)
    return sorted(files)
