"""Where an audit's image bytes live: local files, or URIs (s3://, gs://, abfs://, hdfs://,
file://) over the filesystems pyarrow ships, or fsspec's for other schemes. URIs are accepted
from the CLI and the Python API only; a REST request never names a path or a URL."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(source: object) -> bool:
    """True for text like `s3://bucket/prefix` (a scheme and ://)."""
    return isinstance(source, str) and bool(_URI.match(source))


class MissingFilesystemError(OSError):
    """No filesystem is installed for a URI's scheme."""


def filesystem(uri: str) -> tuple[Any, str]:
    """(pyarrow FileSystem, path inside it) for a URI: pyarrow's own, else fsspec's."""
    from pyarrow import fs

    try:
        found: tuple[Any, str] = fs.FileSystem.from_uri(uri)
        return found
    except (ValueError, NotImplementedError) as arrow_error:  # ArrowInvalid, ArrowNotImplemented
        scheme, _, path = uri.partition("://")
        try:
            import fsspec

            handler = fs.FSSpecHandler(fsspec.filesystem(scheme))
        except ImportError as error:  # fsspec knows the scheme, its package is missing
            raise MissingFilesystemError(
                f"no filesystem for {scheme}:// is installed: {error}"
            ) from None
        except ValueError:  # fsspec does not know it either
            raise MissingFilesystemError(
                f"no filesystem for {scheme}:// ({arrow_error}); pyarrow and fsspec know "
                "s3://, gs://, abfs://, hdfs://, file:// and fsspec's own schemes"
            ) from None
        return fs.PyFileSystem(handler), path


def list_images(uri: str, suffixes: frozenset[str]) -> list[tuple[str, str]]:
    """(name relative to the prefix, URI) of the image files under a URI prefix, sorted."""
    from pyarrow import fs

    system, root = filesystem(uri)
    root = root.rstrip("/")
    scheme = uri.split("://", 1)[0]
    try:
        infos = system.get_file_info(fs.FileSelector(root, recursive=True))
    except (OSError, FileNotFoundError) as error:
        raise OSError(f"cannot list {uri}: {error}") from None
    found = []
    for info in infos:
        if info.type != fs.FileType.File:
            continue
        relative = PurePosixPath(info.path).relative_to(root)
        hidden = any(part.startswith(".") or part == "__MACOSX" for part in relative.parts)
        if hidden or relative.suffix.lower() not in suffixes:
            continue
        found.append((relative.as_posix(), f"{scheme}://{info.path}"))
    return sorted(found)


def read_bytes(location: str) -> bytes:
    """The bytes of a local file or of a URI (OSError when it cannot be read)."""
    if not is_uri(location):
        return Path(location).read_bytes()
    system, path = filesystem(location)
    with system.open_input_stream(path) as stream:
        return bytes(stream.read())


def readable(location: str) -> str | bytes:
    """What the image loader takes: a local path as it is, a URI's bytes."""
    return read_bytes(location) if is_uri(location) else location
