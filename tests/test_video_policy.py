"""The video policy against real things: files, a symlink out of the root, a FIFO, devices, /proc,
playlists, and a TCP listener on 127.0.0.1 that counts every connection it receives."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.core.errors import ConfigError, VideoError
from pipeline.core.turns import VideoSegment
from pipeline.core.video_policy import NO_ROOT, NOT_ALLOWED, OUTSIDE_ROOT, PSEUDO, SCHEME, VideoPolicy
from workers.video.decoder import DecodeConfig, SegmentDecoder
from workers.video.sources import VideoTimeout, _open_local
from workers.video.synthetic import make_video

REPO = Path(__file__).resolve().parents[1]


class Listener:
    """A real TCP listener on 127.0.0.1: records each connection; answers a 302 on `/redirect`
    (to `redirect_to`), and nothing at all otherwise (a server that hangs)."""

    def __init__(self, redirect_to: str = "") -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.redirect_to = redirect_to
        self.connections: list[tuple] = []
        self._held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            self.connections.append(peer)
            conn.settimeout(5)
            try:
                request = conn.recv(4096)
            except OSError:
                request = b""
            if b" /redirect" in request:
                conn.sendall(f"HTTP/1.1 302 Found\r\nLocation: {self.redirect_to}\r\nContent-Length: 0\r\n\r\n".encode())
                conn.close()
            else:
                self._held.append(conn)  # never answered

    def close(self) -> None:
        self.sock.close()
        for conn in self._held:
            conn.close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A video root with a real video, and a real video just outside it."""
    base = tmp_path_factory.mktemp("policy")
    inside = base / "root"
    inside.mkdir()
    make_video(inside / "clip.mp4", 2, 25, "mpeg4", size=(160, 120))
    make_video(base / "outside.mp4", 2, 25, "mpeg4", size=(160, 120))
    (inside / "to-outside.mp4").symlink_to(base / "outside.mp4")
    (inside / "to-passwd").symlink_to("/etc/passwd")
    (inside / "sub").mkdir()
    return inside


def seven(listener: Listener) -> list[str]:
    """The issue's seven URIs: four at the listener, three local files an attacker would like."""
    host = f"127.0.0.1:{listener.port}"
    return [f"http://{host}/v.mp4", f"tcp://{host}", f"rtsp://{host}/v", f"concat:http://{host}/a|http://{host}/b",
            "/etc/passwd", "/dev/stdin", "/proc/self/environ"]


def decoder(policy: VideoPolicy) -> SegmentDecoder:
    return SegmentDecoder(DecodeConfig(frames=2, max_side=64), policy)


def test_by_default_nothing_is_opened_and_no_connection_is_made(listener, root):
    policy = VideoPolicy()
    codes = [policy.decide(uri).refused for uri in seven(listener)]
    assert codes == [NOT_ALLOWED, SCHEME, SCHEME, SCHEME, NO_ROOT, PSEUDO, PSEUDO]
    assert policy.decide(str(root / "clip.mp4")).refused == NO_ROOT
    start = time.monotonic()
    for uri in [*seven(listener), str(root / "clip.mp4")]:
        with pytest.raises(VideoError, match="refused"):
            decoder(policy).decode(VideoSegment(uri, 0, 2))
    assert time.monotonic() - start < 2
    time.sleep(0.2)
    assert listener.connections == []


def test_files_under_the_root_are_read_and_nothing_outside_it(root):
    policy = VideoPolicy(video_roots=(str(root),))
    assert len(decoder(policy).decode(VideoSegment(str(root / "clip.mp4"), 0, 1)).frames) == 2
    assert len(decoder(policy).decode(VideoSegment("clip.mp4", 0, 1)).frames) == 2  # relative: under the root
    assert len(decoder(policy).decode(VideoSegment(f"file://{root}/clip.mp4", 0, 1)).frames) == 2
    for uri, code in [("to-outside.mp4", OUTSIDE_ROOT), ("to-passwd", OUTSIDE_ROOT), ("../outside.mp4", OUTSIDE_ROOT),
                      (str(root.parent / "outside.mp4"), OUTSIDE_ROOT), ("/etc/passwd", OUTSIDE_ROOT),
                      ("sub/../../outside.mp4", OUTSIDE_ROOT), ("/dev/zero", PSEUDO), ("/proc/self/environ", PSEUDO)]:
        assert policy.decide(uri).refused == code, uri
        with pytest.raises(VideoError, match="refused"):
            decoder(policy).decode(VideoSegment(uri, 0, 1))


def test_a_fifo_under_the_root_is_refused_at_once_not_waited_on(root):
    fifo = root / "stuck.fifo"
    os.mkfifo(fifo)
    try:
        policy = VideoPolicy(video_roots=(str(root),), video_timeout_s=30)
        assert policy.decide(str(fifo)).allowed  # a name alone says nothing: the opener looks
        start = time.monotonic()
        with pytest.raises(VideoError, match=r"not a regular file \(a pipe\)"):
            decoder(policy).decode(VideoSegment(str(fifo), 0, 1))
        assert time.monotonic() - start < 1  # no writer ever comes: a blocking open would wait for ever
    finally:
        fifo.unlink()


@pytest.mark.parametrize("path, kind", [("/dev/zero", "a character device"), ("/dev/null", "a character device")])
def test_the_opener_refuses_devices_even_if_a_policy_let_them_through(root, path, kind):
    with pytest.raises(VideoError, match=f"not a regular file \\({kind}\\)"):
        _open_local(path, path, VideoPolicy(video_roots=(str(root),)))


def test_the_opener_checks_what_it_really_opened(root, tmp_path):
    """/proc files are 'regular'; a folder swapped for a symlink after the decision is caught too."""
    policy = VideoPolicy(video_roots=(str(root),))
    with pytest.raises(VideoError, match="refused: it changed while being opened.*in /proc"):
        _open_local("/proc/self/environ", "/proc/self/environ", policy)
    swapped = root / "swapped"
    swapped.symlink_to(root.parent)  # as if `swapped` had been a folder when decided
    try:
        with pytest.raises(VideoError, match="outside every --video-root"):
            _open_local("swapped/outside.mp4", str(swapped / "outside.mp4"), policy)
    finally:
        swapped.unlink()


def test_playlists_and_scripts_in_the_root_cannot_reach_the_network(root, listener):
    (root / "list.m3u8").write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{listener.url}/seg.ts\n"
                                    "#EXT-X-ENDLIST\n")
    (root / "list.mp4").write_bytes((root / "list.m3u8").read_bytes())  # an HLS playlist named like a video
    (root / "script.ffconcat").write_text(f"ffconcat version 1.0\nfile {listener.url}/a.mp4\n")
    policy = VideoPolicy(video_roots=(str(root),))
    for name in ("list.m3u8", "list.mp4", "script.ffconcat"):
        with pytest.raises(VideoError, match="cannot open"):
            decoder(policy).decode(VideoSegment(name, 0, 1))
    # The second guard alone: with HLS let through the format whitelist, its nested open is refused.
    from workers.video.sources import Deadline, _open_container

    reader = _open_local("list.m3u8", str(root / "list.m3u8"), policy)
    reader.name = "list.m3u8"  # our reader has no name (FFmpeg's HLS probe wants the .m3u8 extension): give it one
    try:
        with pytest.raises(VideoError, match="tried to open 'http://127.0.0.1.*may not open other files"):
            _open_container("list.m3u8", reader, "hls", Deadline(5))
    finally:
        reader.close()
    time.sleep(0.2)
    assert listener.connections == []


def test_an_allowed_server_that_never_answers_is_left_at_the_deadline(listener):
    policy = VideoPolicy(video_allow=(f"{listener.url}/",), video_timeout_s=1.5)
    start = time.monotonic()
    with pytest.raises(VideoError, match="took longer than|cannot open"):
        decoder(policy).decode(VideoSegment(f"{listener.url}/v.mp4", 0, 1))
    took = time.monotonic() - start
    assert 1.0 < took < 4, took
    assert len(listener.connections) == 1  # allowed, so it was asked; and let go in time


def test_a_redirect_from_an_allowed_server_is_not_followed(listener):
    target = Listener()
    try:
        allowed = Listener(redirect_to=f"{target.url}/secret.mp4")
        try:
            policy = VideoPolicy(video_allow=(f"{allowed.url}/",), video_timeout_s=3)
            with pytest.raises(VideoError, match="cannot open"):
                decoder(policy).decode(VideoSegment(f"{allowed.url}/redirect", 0, 1))
            time.sleep(0.2)
            assert len(allowed.connections) == 1 and target.connections == []
        finally:
            allowed.close()
    finally:
        target.close()


def test_allow_prefixes_compare_parsed_urls_not_strings():
    policy = VideoPolicy(video_allow=("https://media.internal/calls",))
    assert policy.video_allow == ("https://media.internal/calls/",)
    ok = policy.decide("https://media.internal/calls/1.mp4")
    assert ok.allowed and ok.protocols == "https,tls,tcp"
    assert policy.decide("https://MEDIA.internal:443/calls/1.mp4").allowed
    for uri in ["https://media.internal/calls-private/1.mp4", "https://media.internal.evil.example/calls/1.mp4",
                "https://media.internal@127.0.0.1/calls/1.mp4", "https://media.internal:8443/calls/1.mp4",
                "http://media.internal/calls/1.mp4", "https://media.internal/calls/../admin",
                "https://media.internal/calls/%2e%2e/admin", "https://media.internal\\@127.0.0.1/calls/"]:
        assert not policy.decide(uri).allowed, uri
    assert VideoPolicy(video_allow=("http://cdn.internal:8080/",)).decide("http://cdn.internal:8080/a").protocols \
        == "http,tcp"


@pytest.mark.parametrize("fields, message", [
    (dict(video_roots=("/nonexistent-folder",)), "^video_roots: /nonexistent-folder is not a folder"),
    (dict(video_roots=("/proc",)), "^video_roots: /proc is in /proc"),
    (dict(video_allow=("rtsp://cam.internal/",)), "^video_allow: .* must start with http:// or https://"),
    (dict(video_allow=("https://user@media.internal/",)), "^video_allow: .*no user"),
    (dict(video_timeout_s=0), "^video_timeout_s: must be"),
    (dict(video_timeout_s=float("inf")), "^video_timeout_s: must be"),
    (dict(video_formats=("mov", "hls")), "^video_formats: 'hls' can open other files"),
])
def test_a_bad_policy_names_its_field(fields, message):
    with pytest.raises(ConfigError, match=message):
        VideoPolicy(**fields)


def test_every_segment_has_a_deadline(root):
    policy = VideoPolicy(video_roots=(str(root),), video_timeout_s=0.001)
    with pytest.raises(VideoTimeout, match=r"took longer than the 0.001 s deadline"):
        decoder(policy).decode(VideoSegment("clip.mp4", 0, 2))


def _cli(*args: str, stdin=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], cwd=REPO, stdin=stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def test_describe_dev_stdin_with_stdin_an_open_pipe_exits_at_once_with_one_line():
    reader, writer = os.pipe()  # never written to, never closed while the command runs
    try:
        start = time.monotonic()
        proc = _cli("describe", "/dev/stdin", "--start", "0", "--end", "2", "--video-timeout-s", "5", stdin=reader)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - start
    finally:
        os.close(reader), os.close(writer)
    assert proc.returncode == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "refused" in lines[0] and "/dev/stdin" in lines[0], err
    assert took < 5 + 10, took  # the deadline, plus Python's start-up on a loaded machine
    print(f"describe /dev/stdin: exit {proc.returncode} in {took:.1f} s: {lines[0]}")


def test_describe_a_fifo_in_its_root_exits_with_one_line(tmp_path):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    proc = _cli("describe", str(fifo), "--start", "0", "--end", "2", "--video-timeout-s", "3")
    out, err = proc.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "not a regular file (a pipe)" in lines[0], err


@pytest.mark.parametrize("flags, message", [
    (["--video-root", "/nonexistent-folder"], "video_roots: /nonexistent-folder is not a folder"),
    (["--video-allow", "ftp://x/"], "video_allow: 'ftp://x/' must start with http:// or https://"),
    (["--video-timeout-s", "0"], "video_timeout_s: must be"),
])
def test_serve_refuses_a_bad_video_policy_at_start(flags, message):
    proc = _cli("serve", "--describer", "none", *flags)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and message in err.strip().splitlines()[-1], err[-2000:]
