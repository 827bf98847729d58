"""`VideoPolicy`: which video URIs a worker may open, decided before anything is opened.

A turn's `video.uri` comes from whoever can write to the input stream, so it is never trusted.
What may be opened is the configuration's choice alone:

- **local files** only under one of `video_roots`: the path (relative paths are under the first
  root) is resolved with its symlinks and refused when it leaves every root; `/proc`, `/sys` and
  `/dev` are refused even under a root. Whether it is a regular file is checked when it is opened
  (`workers.video.sources`), on the opened descriptor;
- **remote URLs** only `http://` or `https://` ones starting with one of `video_allow`'s
  prefixes (scheme, host, port and a path prefix, compared after parsing: no user-info trick,
  no look-alike host); FFmpeg then gets a protocol whitelist of exactly that scheme's chain
  (`https,tls,tcp` or `http,tcp`), so no `concat:`, `subfile:`, `rtsp:`, `tcp:` ... is reachable;
- nothing else: `concat:`, `subfile,...:`, `pipe:`, `fd:`, `data:`, `tcp://`, `rtsp://` are
  refused by scheme, and a string FFmpeg would read as a protocol is, for us, only a file name.

With no root and no prefix (the default) nothing is opened. Every decision is pure (string
handling and `os.path.realpath`, which reads links, never files); the opener checks again.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from pipeline.core.config_fields import field_help
from pipeline.core.errors import ConfigError

# Demuxers a video may be read with: plain containers that never open another resource.
# Playlists and scripts (hls, dash, concat, imf, image2, tee...) could reach other protocols and files.
DEFAULT_FORMATS = ("mov", "matroska", "avi", "mpegts", "h264", "hevc", "m4v")
REFUSED_FORMATS = frozenset({"hls", "applehttp", "dash", "concat", "imf", "image2", "image2pipe", "tee",
                             "ffmetadata", "lavfi", "sdp", "rtsp", "rtp", "mpjpeg", "webm_dash_manifest"})
PSEUDO_FS = ("/proc", "/sys", "/dev")
REMOTE_PROTOCOLS = {"https": "https,tls,tcp", "http": "http,tcp"}
DEFAULT_PORTS = {"https": 443, "http": 80}
MAX_URI_CHARS = 4096
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_FORMAT_NAME = re.compile(r"^[a-z0-9_]+$")

# Why a URI was refused: a short, bounded set (a Prometheus label).
MALFORMED, NO_ROOT, OUTSIDE_ROOT, PSEUDO, SCHEME, NOT_ALLOWED = (
    "malformed", "no_root", "outside_root", "pseudo_fs", "scheme", "not_allowed")


@dataclass(frozen=True)
class VideoSource:
    """A decision: `path` (a resolved local file) or `url` with its FFmpeg `protocols`; else `refused`."""

    uri: str
    path: str | None = None
    url: str | None = None
    protocols: str | None = None
    refused: str | None = None  # one of the codes above
    reason: str | None = None  # a readable line

    @property
    def allowed(self) -> bool:
        return self.refused is None


@dataclass(frozen=True)
class VideoPolicy:
    """What a worker may open for a turn's video, and how long it may take."""

    video_roots: tuple[str, ...] = field(default=(), metadata=field_help(
        "a folder local video files may be under, relative paths being under the first (repeatable; "
        "default: none, so no local file is opened)", flag="--video-root", metavar="DIR"))
    video_allow: tuple[str, ...] = field(default=(), metadata=field_help(
        "an http(s) URL prefix remote videos may start with, e.g. https://media.internal/ (repeatable; "
        "default: none, so no remote video is opened)", metavar="URL_PREFIX"))
    video_timeout_s: float = field(default=10.0, metadata=field_help(
        "deadline for opening and reading one video segment, seconds"))
    video_formats: tuple[str, ...] = field(default=DEFAULT_FORMATS, metadata=field_help(
        "a container format (FFmpeg demuxer) a video may be read with (repeatable; default: "
        + ", ".join(DEFAULT_FORMATS) + "; playlists and scripts are never accepted)", flag="--video-format",
        metavar="FORMAT"))

    def __post_init__(self) -> None:
        roots = _as_tuple(self.video_roots, "video_roots")
        resolved = []
        for root in roots:
            if not root:
                raise ConfigError("video_roots: an empty folder name")
            real = os.path.realpath(os.path.abspath(root))
            if _pseudo(real):
                raise ConfigError(f"video_roots: {root} is in {_pseudo(real)}, never a video folder")
            if not os.path.isdir(real):
                raise ConfigError(f"video_roots: {root} is not a folder")
            resolved.append(real)
        object.__setattr__(self, "video_roots", tuple(resolved))
        parsed = tuple(_prefix(p) for p in _as_tuple(self.video_allow, "video_allow"))
        object.__setattr__(self, "video_allow", tuple(text for text, _, _ in parsed))
        object.__setattr__(self, "_allowed", tuple((origin, path) for _, origin, path in parsed))
        t = self.video_timeout_s
        if not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise ConfigError(f"video_timeout_s: must be a number of seconds > 0, got {t!r}")
        formats = _as_tuple(self.video_formats, "video_formats")
        if not formats:
            raise ConfigError("video_formats: at least one container format")
        for name in formats:
            if not _FORMAT_NAME.match(name):
                raise ConfigError(f"video_formats: {name!r} is not a demuxer name")
            if name in REFUSED_FORMATS:
                raise ConfigError(f"video_formats: {name!r} can open other files or URLs; not allowed")
        object.__setattr__(self, "video_formats", formats)

    @property
    def opens_nothing(self) -> bool:
        return not self.video_roots and not self.video_allow

    def decide(self, uri: object) -> VideoSource:
        """Whether `uri` may be opened, and as what; never raises, never opens anything."""
        if not isinstance(uri, str) or not uri:
            return _refuse(str(uri), MALFORMED, "not a non-empty string")
        shown = uri if len(uri) <= 200 else uri[:200] + "..."
        if len(uri) > MAX_URI_CHARS or any(ord(c) < 32 or ord(c) == 127 for c in uri):
            return _refuse(shown, MALFORMED, "over-long or holding control characters")
        path = local_path(uri)
        if path is None:
            if uri.startswith("file:"):
                return _refuse(shown, MALFORMED, "a file:// URI must name an absolute path on this machine")
            return self._remote(uri, shown, _SCHEME.match(uri).group(1).lower())
        if "\0" in path:
            return _refuse(shown, MALFORMED, "a NUL in the path")
        try:
            base = self.video_roots[0] if self.video_roots else os.getcwd()
            real = os.path.realpath(os.path.join(base, path))
        except (OSError, ValueError) as e:
            return _refuse(shown, MALFORMED, f"the path cannot be resolved ({e})")
        pseudo = _pseudo(real)
        if pseudo:
            return _refuse(shown, PSEUDO, f"resolves to {real}, in {pseudo}: never opened")
        if not self.video_roots:
            return _refuse(shown, NO_ROOT, "no --video-root is configured: local files are not opened")
        if not any(_under(real, root) for root in self.video_roots):
            return _refuse(shown, OUTSIDE_ROOT, f"resolves to {real}, outside every --video-root")
        return VideoSource(uri, path=real)

    def _remote(self, uri: str, shown: str, scheme: str) -> VideoSource:
        if scheme not in REMOTE_PROTOCOLS:
            return _refuse(shown, SCHEME, f"scheme {scheme!r} is never opened (local files under --video-root, "
                                          "http(s) URLs under --video-allow only)")
        try:
            parts = urlsplit(uri)
            port = parts.port
        except ValueError as e:
            return _refuse(shown, MALFORMED, f"not a URL ({e})")
        if "\\" in uri or " " in uri or parts.username is not None or parts.password is not None \
                or not parts.hostname:
            return _refuse(shown, MALFORMED, "a URL with user-info, backslashes, spaces or no host")
        origin = (scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme])
        path = parts.path or "/"
        if any(seg in (".", "..") for seg in unquote(path).split("/")) or "%2f" in path.lower():
            return _refuse(shown, MALFORMED, "a URL path with . or .. segments or an encoded /")
        for allowed_origin, allowed_path in self._allowed:
            if allowed_origin == origin and path.startswith(allowed_path):
                return VideoSource(uri, url=uri, protocols=REMOTE_PROTOCOLS[scheme])
        if not self.video_allow:
            return _refuse(shown, NOT_ALLOWED, "no --video-allow prefix is configured: remote videos are not opened")
        return _refuse(shown, NOT_ALLOWED, "not under any --video-allow prefix")


def _prefix(text: object) -> tuple[str, tuple, str]:
    """An allowed URL prefix: (its normal form, (scheme, host, port), path prefix ending in /)."""
    if not isinstance(text, str):
        raise ConfigError(f"video_allow: {text!r} is not a URL prefix")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"video_allow: {text!r} is not a URL ({e})") from None
    scheme = parts.scheme.lower()
    if scheme not in REMOTE_PROTOCOLS:
        raise ConfigError(f"video_allow: {text!r} must start with http:// or https://")
    if not parts.hostname or parts.username is not None or parts.query or parts.fragment or "\\" in text:
        raise ConfigError(f"video_allow: {text!r} must be scheme://host[:port]/path/ (no user, query or fragment)")
    path = parts.path or "/"
    if not path.endswith("/"):
        path += "/"  # https://h/videos must not allow https://h/videos-private/
    host = parts.hostname.lower()
    return f"{scheme}://{host}{f':{port}' if port else ''}{path}", (scheme, host, port or DEFAULT_PORTS[scheme]), path


def local_path(uri: str) -> str | None:
    """The path a local URI names (a plain path, `file:PATH`, `file:///PATH`); None for any other
    scheme (`c:` included: a one-letter prefix is a scheme like the rest, and refused)."""
    if uri.startswith("file://"):
        path = unquote(uri[7:])
        return path if path.startswith("/") else None
    if uri.startswith("file:"):
        return unquote(uri[5:])
    return None if _SCHEME.match(uri) else uri


def _as_tuple(value: object, name: str) -> tuple:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    try:
        return tuple(value)
    except TypeError:
        raise ConfigError(f"{name}: expected a list, got {value!r}") from None


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _pseudo(path: str) -> str | None:
    return next((p for p in PSEUDO_FS if _under(path, p)), None)


def _refuse(uri: str, code: str, why: str) -> VideoSource:
    return VideoSource(uri, refused=code, reason=f"video {uri!r} refused: {why}")
