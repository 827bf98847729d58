"""`dialoguellm bench label`: `dialoguellm label` over the MELD test rows (text only) against the
same engine labelling the same prompts offline, in one run.

(a) offline: an `EmotionEngine` in this process, the rows' requests in batches of 256, warm (its
    start-up not timed), run before (b) and again after it: a shared machine's speed drifts
    over minutes, and (b) is compared with the mean of the two;
(b) the batch job: Ray Data, one engine actor, Parquet written, timed from the job's start to its
    end (Ray and engine start-up included: what a user waits for), and in steady state: the rows
    after the first output file over the time from the first file to the last (start-up excluded).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.benchmarks.common import log

OFFLINE_BATCH = 256



def run_label_benchmark(engine_config: Any, manifest: str, limit: int | None = None) -> dict[str, Any]:
    from pipeline.labelling.job import LabelJob, prepare, run_label_job
    from pipeline.labelling.stages import label_requests
    from workers.engine import EmotionEngine
    from workers.video.actors import VideoPoolConfig

    folder = Path(tempfile.mkdtemp(prefix="dialoguellm-bench-label-"))
    if limit:
        lines = Path(manifest).read_text(encoding="utf-8").splitlines()
        (folder / "manifest.csv").write_text("\n".join(lines[: limit + 1]) + "\n", encoding="utf-8")
        manifest = str(folder / "manifest.csv")
    job = LabelJob(manifest=manifest, out=str(folder / "labels.parquet"), video=VideoPoolConfig(describer="none"))
    _, rows = prepare(job, engine_config.context_turns)
    rows["_description"] = None
    requests = label_requests(rows, job.label_set)
    log(f"bench label: {len(requests)} MELD test rows, text only")

    engine = EmotionEngine(engine_config)
    engine.warm_up()
    before = _offline_rate(engine, requests)
    log(f"  (a) engine offline, batches of {OFFLINE_BATCH}: {before:.2f} turns/s")

    start = time.perf_counter()
    summary = run_label_job(job, engine_config)
    took = time.perf_counter() - start
    rate = summary["labelled_now"] / took
    steady = _steady_rate(Path(job.out))
    after = _offline_rate(engine, requests)
    offline = (before + after) / 2
    log(f"  (a) again, after (b): {after:.2f} turns/s; mean {offline:.2f}")
    result = {"rows": summary["rows"], "label_rows_per_s": round(rate, 2), "offline_turns_per_s": round(offline, 2),
              "offline_before_after": [round(before, 2), round(after, 2)],
              "ratio": round(rate / offline, 3), "seconds": round(took, 1),
              "steady_rows_per_s": round(steady, 2), "steady_ratio": round(steady / offline, 3)}
    log(f"  (b) dialoguellm label (Ray Data, 1 engine actor, start-up included): {rate:.2f} rows/s in {took:.0f} s "
        f"= {result['ratio']:.2f}x (a); steady state {steady:.2f} rows/s = {result['steady_ratio']:.2f}x (a)")
    return result


def _offline_rate(engine: Any, requests: list) -> float:
    start = time.perf_counter()
    for i in range(0, len(requests), OFFLINE_BATCH):
        engine.predict_each(requests[i:i + OFFLINE_BATCH])
    return len(requests) / (time.perf_counter() - start)


def _steady_rate(out: Path) -> float:
    """Rows written after the first file, over the time from the first file to the last."""
    import pyarrow.parquet as pq

    files = sorted(out.glob("*.parquet"), key=lambda p: p.stat().st_mtime)
    if len(files) < 2:
        return float("nan")
    rows = sum(pq.read_metadata(f).num_rows for f in files[1:])
    return rows / (files[-1].stat().st_mtime - files[0].stat().st_mtime)
