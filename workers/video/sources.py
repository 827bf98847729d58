"""Opening a video the `VideoPolicy` allows, with a deadline: the only place a worker opens one.

- **Local files**: opened by us, `O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY` (a FIFO or a
  device cannot block the open, a last-moment symlink is not followed), then `fstat` on the
  descriptor: anything but a regular file is refused; the descriptor's real path is checked
  against the roots again (a folder swapped for a symlink after the decision is caught). PyAV
  gets the open file object, so FFmpeg uses no protocol at all; its `io_open` refuses every
  nested open (an HLS or concat file cannot make it open anything), and only the policy's
  container formats are accepted. Every read checks the deadline.
- **Remote URLs**: FFmpeg opens them with `protocol_whitelist` set to the scheme's chain and
  nothing more (`https,tls,tcp` / `http,tcp`), no redirects (a redirect could point anywhere),
  the same format whitelist, and PyAV's interrupt timeout on the open and every read.

The decoder checks the same deadline between frames, so a segment is held at most about
`video_timeout_s`, whatever the file.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Iterator
from typing import Any

from pipeline.core.errors import VideoError
from pipeline.core.video_policy import VideoPolicy


class VideoTimeout(VideoError):
    """A segment took longer than the policy's deadline to open, read or decode."""


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        return self.at - time.monotonic()

    def check(self, uri: str, doing: str) -> None:
        if time.monotonic() > self.at:
            raise VideoTimeout(f"{uri}: {doing} took longer than the {self.seconds:g} s deadline (--video-timeout-s)")


@contextlib.contextmanager
def open_video(uri: str, policy: VideoPolicy, deadline: Deadline) -> Iterator[Any]:
    """An open PyAV input container for `uri` (closed, with its file, on leaving), or `VideoError`
    saying why not."""
    source = policy.decide(uri)
    if not source.allowed:
        raise VideoError(source.reason)
    formats = ",".join(policy.video_formats)
    if source.path is None:
        with _open_remote(uri, source.url, source.protocols, formats, deadline) as container:
            yield container
        return
    reader = _open_local(uri, source.path, policy)
    try:
        with _open_container(uri, reader, formats, deadline) as container:
            yield container
    finally:
        reader.close()


def _open_local(uri: str, path: str, policy: VideoPolicy) -> _DeadlineFile:
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise VideoError(f"cannot open {uri}: {e.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise VideoError(f"video {uri!r} refused: not a regular file ({_kind(mode)})")
        opened = _fd_path(fd)
        if opened is not None and opened != path:
            again = policy.decide(opened)
            if not again.allowed:
                raise VideoError(f"video {uri!r} refused: it changed while being opened; {again.reason}")
        return _DeadlineFile(fd, uri)
    except BaseException:
        os.close(fd)
        raise


def _open_container(uri: str, reader: _DeadlineFile, formats: str, deadline: Deadline) -> Any:
    import av

    reader.deadline = deadline
    try:
        return av.open(reader, "r", container_options={"format_whitelist": formats}, io_open=_refuse_nested)
    except (av.error.FFmpegError, OSError, ValueError) as e:
        if isinstance(e, VideoError):
            raise
        raise VideoError(f"cannot open {uri}: {_reason(e, formats)}") from None


def _open_remote(uri: str, url: str, protocols: str, formats: str, deadline: Deadline) -> Any:
    import av

    left = max(0.05, deadline.left())
    options = {"protocol_whitelist": protocols, "format_whitelist": formats, "max_redirects": "0",
               "rw_timeout": str(int(left * 1_000_000))}
    try:
        return av.open(url, "r", container_options=options, timeout=(left, left))
    except (av.error.FFmpegError, OSError) as e:
        deadline.check(uri, "opening")
        raise VideoError(f"cannot open {uri}: {_reason(e, formats)}") from None


class _DeadlineFile:
    """A read-only file on an open descriptor whose every read checks the deadline (for PyAV)."""

    def __init__(self, fd: int, uri: str) -> None:
        self._file = os.fdopen(fd, "rb", buffering=0)
        self.uri = uri
        self.deadline: Deadline | None = None

    def read(self, n: int = -1) -> bytes:
        if self.deadline is not None:
            self.deadline.check(self.uri, "reading")
        return self._file.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._file.close()


def _refuse_nested(url: str, flags: int, options: dict) -> Any:
    raise VideoError(f"the video tried to open {url[:200]!r}; a video may not open other files or URLs")


def _fd_path(fd: int) -> str | None:
    if not os.path.isdir("/proc/self/fd"):
        return None
    try:
        return os.path.realpath(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a pipe"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a plain file"


def _reason(error: Exception, formats: str) -> str:
    text = getattr(error, "strerror", None) or str(error)
    if "Invalid argument" in text:
        text += f" (is it a container outside {formats}?)"
    return text
