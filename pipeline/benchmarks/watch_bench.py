"""`dialoguellm bench watch`: the watch page with many active conversations against a few, in one run.

For each size, conversations of `turns` MELD-like labels are written to fresh streams, a
`dialoguellm watch` server is started as its own process (so its memory is its own) and the page
is opened in headless Chromium. Figures: the page's load (navigation start to the first full
board on screen, from the page's own timings), the time from a label's XADD to its cell on screen
(a MutationObserver sees the cell, a task queued then runs after that frame is painted; its clock
against the writer's, the same machine's) over `updates` labels of random conversations, the
page's draw time per update (script, layout, paint), the server's RSS and the page's JS heap.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from pipeline.benchmarks.common import log
from pipeline.benchmarks.stream_bench import _percentile
from pipeline.core.labels import LABEL_SETS
from pipeline.core.wire import LabelMessage

REPO = Path(__file__).resolve().parents[2]
MELD = LABEL_SETS["meld"].labels
SPEAKERS = ("Agent", "Customer")
# Sets window.__seen to the time the cell of (conversation, turn) is on screen.
WATCH_CELL = """
const [cid, turn] = arguments;
window.__seen = null;
const found = () => [...document.querySelectorAll('#board .row')].some(
  (r) => r.dataset.cid === cid && r.querySelector('.cell[data-turn="' + turn + '"]'));
const observer = new MutationObserver(() => {
  // A task queued from the change runs once the frame showing it is laid out and painted.
  if (found()) { observer.disconnect(); setTimeout(() => { window.__seen = Date.now(); }, 0); }
});
observer.observe(document.querySelector('#board .rows'), { childList: true, subtree: true });
"""


def run_watch_benchmark(redis_url: str, sizes: tuple[int, ...] = (2000, 20), turns: int = 10,
                        updates: int = 20) -> dict[str, Any]:
    """The figures for each number of conversations in `sizes`, and the first against the last."""
    import redis

    from pipeline.watch.browser import headless_chromium

    client = redis.Redis.from_url(redis_url)
    driver = headless_chromium()
    try:
        runs = {str(n): _measure(client, redis_url, driver, n, turns, updates) for n in sizes}
    finally:
        driver.quit()
    big, small = runs[str(sizes[0])], runs[str(sizes[-1])]
    result = {"turns_per_conversation": turns, "updates": updates, "runs": runs,
              "update_p50_ratio": round(big["update_p50_ms"] / small["update_p50_ms"], 2),
              "rss_ratio": round(big["server_rss_mib"] / small["server_rss_mib"], 2)}
    log(f"  {sizes[0]} conversations against {sizes[-1]}: update p50 x{result['update_p50_ratio']}, "
        f"server RSS x{result['rss_ratio']}")
    return result


def _measure(client: Any, redis_url: str, driver: Any, conversations: int, turns: int, updates: int) -> dict[str, Any]:
    from pipeline.stream.client import delete_keys

    prefix = f"dialoguellm:bench:watch:{uuid.uuid4().hex[:8]}"
    labels, alerts = f"{prefix}:labels", f"{prefix}:alerts"
    rng = random.Random(conversations)
    pipe = client.pipeline(transaction=False)
    for c in range(conversations):
        for t in range(turns):
            pipe.xadd(labels, _label(rng, f"call-{c}", t).encode())
        if c % 100 == 99:
            pipe.execute()
    pipe.execute()
    start = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "watch", "--redis", redis_url,
                               "--labels-stream", labels, "--alerts-stream", alerts, "--port", "0"],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        if not line.startswith("watch: "):
            raise RuntimeError(f"the watch server did not start (exit code {server.wait()})")
        started_s = time.perf_counter() - start
        driver.get(line.split(" ", 1)[1].strip())
        _until(driver, "return window.watchTimings && window.watchTimings.firstSyncMs !== null && "
                       f"document.querySelectorAll('#board .row').length === {conversations}")
        load_ms = driver.execute_script("return window.watchTimings.firstSyncMs")
        draws_before = len(driver.execute_script("return window.watchTimings.renderMs"))
        latencies = []
        for i in range(updates):
            cid, turn = f"call-{rng.randrange(conversations)}", turns + i
            driver.execute_script(WATCH_CELL, cid, turn)
            written_ms = time.time() * 1000
            client.xadd(labels, _label(rng, cid, turn).encode())
            seen_ms = _until(driver, "return window.__seen")
            latencies.append(seen_ms - written_ms)
        draws = driver.execute_script("return window.watchTimings.renderMs")[draws_before:]
        figures = {
            "conversations": conversations, "server_start_s": round(started_s, 2), "page_load_ms": round(load_ms, 1),
            "update_p50_ms": round(_percentile(latencies, 0.5), 1), "update_p95_ms": round(_percentile(latencies, 0.95), 1),
            "draw_p50_ms": round(_percentile(draws, 0.5), 2), "draw_max_ms": round(max(draws), 2),
            "server_rss_mib": _rss_mib(server.pid),
            "page_heap_mib": round(driver.execute_script("return performance.memory.usedJSHeapSize") / 2**20, 1),
        }
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(30)
        delete_keys(client, f"{prefix}:*")
    log(f"bench watch, {conversations} conversations x {turns} turns: page load {figures['page_load_ms']:.0f} ms; "
        f"label XADD -> on the page p50 {figures['update_p50_ms']:.0f} ms, p95 {figures['update_p95_ms']:.0f} ms "
        f"(draw p50 {figures['draw_p50_ms']:.1f} ms); server RSS {figures['server_rss_mib']} MiB, "
        f"page heap {figures['page_heap_mib']} MiB")
    return figures


def _label(rng: random.Random, cid: str, turn: int) -> LabelMessage:
    """A MELD-like label: one emotion peaked, the rest spread at random."""
    weights = [rng.random() ** 3 for _ in MELD]
    total = sum(weights)
    probs = {name: w / total for name, w in zip(MELD, weights)}
    best = max(probs, key=probs.get)
    return LabelMessage(cid, turn, best, probs[best], probs, None, "bench", "0-1", 100.0,
                        speaker=rng.choice(SPEAKERS))


def _until(driver: Any, script: str, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := driver.execute_script(script)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page did not get there in {timeout_s:.0f} s: {script}")
        time.sleep(0.005)
    return value


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for process {pid}")
