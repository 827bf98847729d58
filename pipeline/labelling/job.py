"""`dialoguellm label`: a manifest of turns to a Parquet folder of labels, with Ray Data.

read manifest → context per conversation (from the whole manifest) → skip rows already in the
output → describe video segments (actor pool) → label (engine actor pool) → write Parquet.
Files of at most `rows_per_file` rows are added to the output folder as the run goes, so an
interrupted run keeps what it wrote; a rerun skips those rows. A file cut short by a kill is
unreadable: it is removed at the next start and its rows are done again. Only files this job
writes are ever removed: they are named `labels_*.parquet` in a folder holding the marker
`.dialoguellm-labels`; a folder with other content is refused.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.config_fields import field_help
from pipeline.core.errors import ConfigError, DataError
from pipeline.core.labels import LABEL_SETS
from pipeline.core.speakers import SpeakerPolicy, label_speakers_field
from pipeline.labelling.manifest import OUTPUT_COLUMNS, ROW, add_context, normalise, read_table
from workers.engine_pool import PoolConfig
from workers.video.actors import VideoPoolConfig

MARKER = ".dialoguellm-labels"
PART_PREFIX = "labels_"


@dataclass(frozen=True)
class LabelJob:
    """A manifest of turns labelled into a Parquet folder: what to read, where to write, on what."""

    manifest: str = field(metadata=field_help("one row per turn (see the README)"))
    out: str = field(metadata=field_help("output folder, e.g. labels.parquet"))
    label_set: str = field(default="meld", metadata=field_help("labels to choose from",
                                                               choices=lambda: tuple(LABEL_SETS)))
    batch_size: int = field(default=256, metadata=field_help("rows per engine batch"))
    rows_per_file: int = field(default=256, metadata=field_help("rows per Parquet file (what a resume redoes)"))
    cache_dir: str | None = field(default=None, metadata=field_help(
        "description cache (default: $DIALOGUELLM_HOME/descriptions)"))
    label_speakers: str | None = label_speakers_field()
    raw_text: bool = field(default=False, metadata=field_help(
        "write the manifest's utterances into the output as they are (default: redacted, as every text our "
        "commands write for people or training; see Redaction)"))
    # Engine actors: `engines`, their GPUs and CPUs, batches in flight each, the Ray cluster.
    pool: PoolConfig = field(default_factory=PoolConfig)
    video: VideoPoolConfig = field(default_factory=VideoPoolConfig)

    def __post_init__(self) -> None:
        for name in ("batch_size", "rows_per_file"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        if not str(self.out).endswith(".parquet"):
            raise ConfigError(f"out: {self.out!r} should name a .parquet folder")
        SpeakerPolicy(self.label_speakers)  # a bad regular expression fails here, naming label_speakers

    @property
    def speakers(self) -> SpeakerPolicy:
        """Who gets an emotion; other speakers' rows are context only (no label, still context)."""
        return SpeakerPolicy(self.label_speakers)

    @property
    def video_root(self) -> str | None:
        """Where the manifest's relative video paths (MELD's clip names) are: the first --video-root."""
        roots = self.video.policy.video_roots
        return roots[0] if roots else None


def done_rows(out: str | Path) -> set[int]:
    """Manifest rows already written; unreadable part files (a killed write) are removed."""
    import pyarrow.parquet as pq

    folder = Path(out)
    if not folder.exists():
        return set()
    if not folder.is_dir():
        raise DataError(f"out: {folder} exists and is not a folder of Parquet files")
    if not (folder / MARKER).is_file():
        if any(folder.iterdir()):
            raise DataError(f"out: {folder} holds files this command did not write (no {MARKER} marker); "
                            "pick a new or empty folder")
        return set()
    done: set[int] = set()
    for path in sorted(folder.glob(f"{PART_PREFIX}*.parquet")):
        try:
            done.update(pq.read_table(path, columns=[ROW]).column(ROW).to_pylist())
        except Exception:  # pyarrow raises several types for a truncated file
            print(f"removing {path.name}: unreadable (a write cut short); its rows are labelled again",
                  file=sys.stderr)
            path.unlink()
    return done


def prepare(job: LabelJob, context_turns: int) -> tuple[Any, Any]:
    """(all rows with context, the rows still to label). Every row is context for the later rows of
    its conversation; `_context_only` marks those the speaker policy leaves without an emotion."""
    table = read_table(job.manifest)
    rows = add_context(normalise(table, job.video_root, job.label_set, job.manifest), context_turns)
    speakers = job.speakers
    rows["_context_only"] = [not speakers.labels(s) for s in rows["_speaker"]]
    # A gold `label` column stays, as `gold_label`: `label` is the prediction.
    rows = rows.rename(columns={"label": "gold_label"})
    done = done_rows(job.out)
    pending = rows[~rows["_row"].isin(done)].copy()
    pending["error"] = ""
    return rows, pending


def run_label_job(job: LabelJob, engine_config: Any) -> dict[str, Any]:
    """Label the pending rows; returns counts (and the evaluation when the manifest has gold labels)."""
    from concurrent.futures import ThreadPoolExecutor

    import ray

    from pipeline.labelling.stages import DescribeStage, LabelStage
    from workers.actor_set import ensure_ray

    # The manifest is read while Ray starts (seconds): neither needs the other. Ray starts on
    # this thread (its start-up installs signal handlers, which only the main thread may do).
    with ThreadPoolExecutor(1) as background:
        prepared = background.submit(prepare, job, engine_config.context_turns)
        ensure_ray(job.pool.ray_address)
        rows, pending = prepared.result()
    summary: dict[str, Any] = {"rows": len(rows), "already_done": len(rows) - len(pending), "labelled_now": 0,
                               "context_only": int(pending["_context_only"].sum())}
    print(f"manifest: {len(rows)} rows; {summary['already_done']} already in {job.out}; {len(pending)} to label",
          file=sys.stderr, flush=True)
    if len(pending):
        gpus = job.pool.gpus_per_engine
        if gpus is None:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        pending = pending.drop(columns=[c for c in OUTPUT_COLUMNS if c != "error" and c in pending])
        # One block per output file: blocks stream through the stages and each is written when
        # done, so an interrupted run keeps its finished files.
        step = job.rows_per_file
        ds = ray.data.from_pandas([pending.iloc[i:i + step] for i in range(0, len(pending), step)])
        video = job.video
        # A context-only row's video is never opened (its speaker gets no emotion, from words or face).
        if video.enabled and (pending["_video_uri"].notna() & ~pending["_context_only"]).any():
            ds = ds.map_batches(DescribeStage, batch_format="pandas", batch_size=16, concurrency=video.actors,
                                num_cpus=0.5, num_gpus=float(video.describer == "vlm"),
                                fn_constructor_args=(video.describer, video.decode,
                                                     job.cache_dir or _default_cache(), video.options,
                                                     video.policy))
        # Two batches in flight per engine actor (as the stream worker and ray.data.llm keep): the
        # next batch is fetched and converted while the engine labels this one; the engine itself
        # labels one batch at a time.
        inflight = job.pool.max_inflight_per_engine
        label_pool = ray.data.ActorPoolStrategy(size=job.pool.engines, max_tasks_in_flight_per_actor=inflight,
                                                max_concurrent_calls_per_actor=inflight)
        ds = ds.map_batches(LabelStage, batch_format="pandas", batch_size=job.batch_size, compute=label_pool,
                            num_cpus=job.pool.cpus_per_engine, num_gpus=gpus,
                            fn_constructor_args=(engine_config, job.label_set, job.raw_text))
        Path(job.out).mkdir(parents=True, exist_ok=True)
        (Path(job.out) / MARKER).write_text(f"written by dialoguellm label; part files: {PART_PREFIX}*.parquet\n")
        ds.write_parquet(job.out, max_rows_per_file=job.rows_per_file, filename_provider=_part_names())
        summary["labelled_now"] = len(pending) - summary["context_only"]
    summary.update(_evaluate(job, rows))
    return summary


def _part_names() -> Any:
    """Ray Data names the part files `labels_*.parquet`, so a rerun knows which are its own."""
    from ray.data.datasource import FilenameProvider

    return FilenameProvider(dataset_uuid=PART_PREFIX.rstrip("_"), file_format="parquet")


def _evaluate(job: LabelJob, rows: Any) -> dict[str, Any]:
    import pandas as pd

    from pipeline.core.labels import get_label_set
    from pipeline.core.metrics import classification_report

    if rows["_gold"].isna().all() or not Path(job.out).exists():
        return {}
    labelled = pd.read_parquet(job.out, columns=[ROW, "label"])
    gold = dict(zip(rows["_row"], rows["_gold"]))
    pairs = [(gold[r], p) for r, p in zip(labelled[ROW], labelled["label"])
             if isinstance(gold.get(r), str) and isinstance(p, str)]
    if not pairs:
        return {}
    report = classification_report([g for g, _ in pairs], [p for _, p in pairs], get_label_set(job.label_set))
    return {"report": report}


def _default_cache() -> str:
    from workers.model_store import home

    return str(home() / "descriptions")


def read_label_files(out: str | Path) -> Any:
    """The output folder as one DataFrame, in manifest order."""
    import pandas as pd

    return pd.read_parquet(out).sort_values(ROW).reset_index(drop=True)
