"""One typed config per command, composed of the flows' and workers' own configs.

Each is a frozen dataclass: its documented fields are the command's flags (see
`pipeline.core.flags`), its sub-configs groups of flags, and its `__post_init__` hands a setting the
command defines once to every part that uses it (e.g. the Ray address to the engine and video
pools). A bad value fails when the config is built, naming the field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.alerts.config import DEFAULT_ALERTS_STREAM, AlertsConfig
from pipeline.core.config_fields import field_help
from pipeline.core.conversation_prompt import PROMPTS
from pipeline.core.datasets import DATASETS, SPLITS
from pipeline.core.decision import check_objectives
from pipeline.core.errors import ConfigError
from pipeline.core.labels import LABEL_SETS
from pipeline.core.redaction import RedactionConfig
from pipeline.labelling.job import LabelJob
from pipeline.stream.config import (
    DEFAULT_IN_STREAM,
    DEFAULT_OUT_STREAM,
    StreamConfig,
    adapters_root_field,
    check_redis_url,
    control_stream_field,
    redis_url_field,
)
from pipeline.watch.config import DEFAULT_CORRECTIONS_STREAM
from workers.engine_config import EngineConfig
from workers.engine_pool import PoolConfig
from workers.video.actors import VideoPoolConfig

LOG_FORMATS = ("json", "text")
DEFAULT_RECIPE = Path(__file__).resolve().parents[2] / "training" / "configs" / "smollm2-135m-cpu.yaml"


def data_field() -> Any:
    return field(default=None, metadata=field_help(
        "data root, dataset folder or file (default: $DIALOGUELLM_DATA or ../shared/data)"))


def json_field() -> Any:
    return field(default=False, metadata=field_help("end with one JSON line of the figures"))


def log_format_field() -> Any:
    return field(default="json", metadata=field_help("log lines as JSON objects or as text", choices=LOG_FORMATS))


def label_set_field(default: str | None, what: str) -> Any:
    return field(default=default, metadata=field_help(what, choices=lambda: tuple(LABEL_SETS)))


def _positive(config: Any, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if value is not None and value <= 0:
            raise ConfigError(f"{name}: must be > 0, got {value}")


def _engine_served(config: Any) -> None:
    """The engine as a command serves it: the first `--adapter` is the default unless one is named,
    and with the default model and none given, the shipped adapter (`EngineConfig.resolved`)."""
    engine = config.engine
    first = engine.default_adapter or next(iter(engine.adapters), None)
    object.__setattr__(config, "engine", dataclasses.replace(engine, default_adapter=first).resolved())


def _video_on_pool(config: Any) -> None:
    """The video actors join the same Ray cluster, with the same start-up deadline, as the engines."""
    object.__setattr__(config, "video", dataclasses.replace(
        config.video, ray_address=config.pool.ray_address, startup_timeout_s=config.pool.startup_timeout_s))


@dataclass(frozen=True)
class EvalConfig:
    """`dialoguellm eval`."""

    dataset: str = field(metadata=field_help("the dataset", choices=lambda: tuple(DATASETS)))
    split: str = field(default="test", metadata=field_help("the split", choices=SPLITS))
    data: str | None = data_field()
    label_set: str | None = label_set_field(None, "label set of a jsonl dataset (default: meld)")
    limit: int | None = field(default=None, metadata=field_help("evaluate the first N labelled turns"))
    batch_size: int = field(default=256, metadata=field_help("turns per engine call"))
    report: str = field(default="report.json", metadata=field_help(
        "where the JSON report goes; the PNG lands beside it"))
    baseline: str | None = field(default=None, metadata=field_help(
        "evaluate a baseline instead of the LLM: MiniLM-L6 embeddings + logistic regression, fitted on the "
        "dataset's train split (utterance only)", choices=("minilm",)))
    engine: EngineConfig = field(default_factory=EngineConfig)

    def __post_init__(self) -> None:
        _positive(self, "limit", "batch_size")
        _engine_served(self)


@dataclass(frozen=True)
class ServeConfig:
    """`dialoguellm serve`: streams, engine pool, engine and video."""

    stream: StreamConfig = field(default_factory=StreamConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    video: VideoPoolConfig = field(default_factory=VideoPoolConfig)
    log_format: str = log_format_field()

    def __post_init__(self) -> None:
        _engine_served(self)
        _video_on_pool(self)


@dataclass(frozen=True)
class DemoConfig:
    """`dialoguellm demo`: one MELD test conversation through the streaming worker."""

    conversation: str = field(default="1", metadata=field_help("MELD test Dialogue_ID"))
    watch: int | None = field(default=None, metadata=field_help(
        "serve the watch page at http://127.0.0.1:PORT/ (default port 8765) while the demo runs", const=8765,
        metavar="PORT"))
    data: str | None = data_field()
    stream: StreamConfig = field(default_factory=lambda: StreamConfig(claim_interval_ms=1000))
    pool: PoolConfig = field(default_factory=PoolConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)

    def __post_init__(self) -> None:
        _engine_served(self)


@dataclass(frozen=True)
class PushConfig:
    """`dialoguellm push`."""

    file: str = field(metadata=field_help("a MELD-layout .csv or a .jsonl file of turns", positional=True))
    redis_url: str = redis_url_field()
    stream: str = field(default=DEFAULT_IN_STREAM, metadata=field_help("input stream"))
    conversation: tuple[str, ...] = field(default=(), metadata=field_help(
        "only this conversation id (repeatable)", metavar="ID"))
    rate: float | None = field(default=None, metadata=field_help("turns per second (default: as fast as possible)"))
    label_set: str | None = label_set_field(None, "label set of a .jsonl file (default: meld)")
    adapter: str | None = field(default=None, metadata=field_help(
        "adapter name to ask for (one the worker was started with)"))

    def __post_init__(self) -> None:
        _positive(self, "rate")

    def redis_keys(self) -> tuple[str, ...]:
        return (self.stream,)


@dataclass(frozen=True)
class TailConfig:
    """`dialoguellm tail`."""

    redis_url: str = redis_url_field()
    stream: str = field(default=DEFAULT_OUT_STREAM, metadata=field_help("output stream"))
    from_start: bool = field(default=False, metadata=field_help("print the labels already there first"))
    count: int | None = field(default=None, metadata=field_help("stop after this many labels"))
    idle_timeout: float | None = field(default=None, metadata=field_help(
        "stop when no label came for this many seconds"))
    json: bool = field(default=False, metadata=field_help("one JSON object a line"))

    def __post_init__(self) -> None:
        _positive(self, "count", "idle_timeout")

    def redis_keys(self) -> tuple[str, ...]:
        return (self.stream,)


@dataclass(frozen=True)
class ReplayConfig:
    """`dialoguellm replay`."""

    redis_url: str = redis_url_field()
    in_stream: str = field(default=DEFAULT_IN_STREAM, metadata=field_help("input stream"))
    dead_stream: str | None = field(default=None, metadata=field_help("dead-letter stream (default: IN_STREAM:dead)"))
    ids: tuple[str, ...] = field(default=(), metadata=field_help(
        "only the entry with this source_id (repeatable)", flag="--id", metavar="SOURCE_ID"))
    error_contains: str | None = field(default=None, metadata=field_help(
        "only entries whose error contains TEXT", metavar="TEXT"))
    dry_run: bool = field(default=False, metadata=field_help("list what would be replayed, change nothing"))

    @property
    def dead_letter_stream(self) -> str:
        return self.dead_stream or f"{self.in_stream}:dead"

    def redis_keys(self) -> tuple[str, ...]:
        return (self.dead_letter_stream, self.in_stream)


@dataclass(frozen=True)
class ForgetConfig:
    """`dialoguellm forget`."""

    conversation: str = field(metadata=field_help("the conversation whose stored texts are deleted", metavar="ID"))
    redis_url: str = redis_url_field()
    in_stream: str = field(default=DEFAULT_IN_STREAM, metadata=field_help(
        "input stream: its entries of the conversation, and its context hash IN_STREAM:ctx:ID"))
    dead_stream: str | None = field(default=None, metadata=field_help("dead-letter stream (default: IN_STREAM:dead)"))
    labels: bool = field(default=False, metadata=field_help(
        "also delete the conversation's entries in the labels and alerts streams"))
    out_stream: str = field(default=DEFAULT_OUT_STREAM, metadata=field_help("labels stream (with --labels)"))
    alerts_stream: str = field(default=DEFAULT_ALERTS_STREAM, metadata=field_help("alerts stream (with --labels)"))
    corrections_stream: str = field(default=DEFAULT_CORRECTIONS_STREAM, metadata=field_help(
        "corrections stream: the conversation's corrections (they hold its texts) are deleted too"))
    dry_run: bool = field(default=False, metadata=field_help("count what would be deleted, delete nothing"))

    def __post_init__(self) -> None:
        if not self.conversation:
            raise ConfigError("conversation: must not be empty")

    @property
    def streams(self) -> tuple[str, ...]:
        """The streams searched for the conversation's entries."""
        mine = (self.in_stream, self.dead_stream or f"{self.in_stream}:dead", self.corrections_stream)
        return mine + ((self.out_stream, self.alerts_stream) if self.labels else ())

    def redis_keys(self) -> tuple[str, ...]:
        return self.streams


@dataclass(frozen=True)
class CorrectionsExportConfig:
    """`dialoguellm corrections export`."""

    out: str = field(metadata=field_help(
        "folder for train.jsonl, dev.jsonl (the held-back part) and manifest.json", metavar="DIR"))
    redis_url: str = redis_url_field()
    corrections_stream: str = field(default=DEFAULT_CORRECTIONS_STREAM, metadata=field_help("the corrections"))
    in_stream: str = field(default=DEFAULT_IN_STREAM, metadata=field_help(
        "input stream whose context store (IN_STREAM:ctx:ID) gives texts a correction was saved without"))
    label_set: str | None = label_set_field(None, "export the corrections of this label set (default: the only "
                                                  "one among the corrections)")
    dev_share: float = field(default=0.2, metadata=field_help(
        "share of conversations held back as dev (chosen by a hash of the conversation id: deterministic)"))
    raw_text: bool = field(default=False, metadata=field_help(
        "UNREDACTED: write the texts as stored (default: card numbers, IBANs, e-mail addresses and phone numbers "
        "replaced, as everywhere texts leave the worker)"))
    redaction: RedactionConfig = field(default_factory=RedactionConfig)

    def __post_init__(self) -> None:
        if not 0 <= self.dev_share < 1:
            raise ConfigError(f"dev_share: must be in [0, 1), got {self.dev_share}")
        if not self.out:
            raise ConfigError("out: must not be empty")

    def redis_keys(self) -> tuple[str, ...]:
        return (self.corrections_stream,)


def _parse_sets(values: list[str]) -> tuple[tuple[str, str, str | None], ...]:
    """`DATASET[:SPLIT][=PATH]` (split default dev) as (dataset, split, path)."""
    out = []
    for value in values:
        name, _, path = value.partition("=")
        dataset, _, split = name.partition(":")
        dataset, split = dataset.strip(), split.strip() or "dev"
        if dataset not in DATASETS:
            raise ConfigError(f"sets: unknown dataset {dataset!r} in {value!r} (known: {', '.join(DATASETS)})")
        if split not in SPLITS:
            raise ConfigError(f"sets: unknown split {split!r} in {value!r} (known: {', '.join(SPLITS)})")
        out.append((dataset, split, path.strip() or None))
    return tuple(out)


def _parse_objectives(values: list[str]) -> dict[str, str]:
    """`LABEL_SET=OBJECTIVE` pairs as a mapping (checked by the config)."""
    out = {}
    for value in values:
        label_set, sep, objective = value.partition("=")
        if not sep or not label_set.strip() or not objective.strip():
            raise ConfigError(f"objective: expected LABEL_SET=OBJECTIVE, got {value!r}")
        out[label_set.strip()] = objective.strip()
    return out


def _parse_adapter(value: str, where: str) -> tuple[str, str | None]:
    """`NAME=PATH`; for `against` also `default` (the shipped adapter) or `base` (the bare model)."""
    from workers.adapters import BASE_MODEL
    from workers.model_store import DEFAULT_ADAPTER, default_adapter_dir

    if where == "against" and value in (DEFAULT_ADAPTER, BASE_MODEL):
        if value == BASE_MODEL:
            return BASE_MODEL, None
        shipped = default_adapter_dir()
        if shipped is None:
            raise ConfigError("against: this install has no shipped default adapter; give NAME=PATH")
        return DEFAULT_ADAPTER, str(shipped)
    name, sep, path = value.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise ConfigError(f"{where}: expected NAME=PATH, got {value!r}")
    if name.strip() == BASE_MODEL:
        raise ConfigError(f"{where}: the name {BASE_MODEL!r} is reserved for the bare model")
    return name.strip(), path.strip()


@dataclass(frozen=True)
class GateConfig:
    """`dialoguellm gate`."""

    candidate: str = field(metadata=field_help("the new adapter, as NAME=PATH", metavar="NAME=PATH"))
    against: str = field(default="default", metadata=field_help(
        "the adapter it must beat: NAME=PATH, default (the shipped adapter) or base (the bare model)",
        metavar="NAME=PATH|default|base"))
    corrections: str = field(default="corrections", metadata=field_help(
        "the folder `corrections export` wrote: its dev.jsonl is the set the candidate must be better on",
        metavar="DIR"))
    sets: tuple[tuple[str, str, str | None], ...] = field(default=(("meld", "dev", None),), metadata=field_help(
        "a held-back set the candidate may be at most --margin worse on (repeatable; default: meld:dev); "
        "PATH: a data root, folder or file (a corrections export folder for jsonl)", flag="--set",
        parse=_parse_sets, metavar="DATASET[:SPLIT][=PATH]"))
    margin: float = field(default=0.02, metadata=field_help(
        "how much worse (in --metric) the candidate may be on the other sets"))
    metric: str = field(default="weighted_f1", metadata=field_help(
        "the figure the decision reads", choices=("weighted_f1", "macro_f1")))
    limit: int | None = field(default=None, metadata=field_help("evaluate the first N labelled turns of each set"))
    batch_size: int = field(default=256, metadata=field_help("turns per engine call"))
    report: str | None = field(default=None, metadata=field_help(
        "write both adapters' reports and the decision as JSON here", metavar="FILE"))
    data: str | None = data_field()
    engine: EngineConfig = field(default_factory=EngineConfig)

    def __post_init__(self) -> None:
        _positive(self, "limit", "batch_size")
        if self.margin < 0:
            raise ConfigError(f"margin: must be ≥ 0, got {self.margin}")
        if self.engine.adapters:
            raise ConfigError("adapter: the gate serves --candidate and --against; give no --adapter")
        (candidate, _), (against, _) = self.adapters()
        if candidate == against:
            raise ConfigError(f"against: must be another name than the candidate's ({candidate!r})")

    def adapters(self) -> tuple[tuple[str, str | None], tuple[str, str | None]]:
        """(name, path) of the candidate and of the adapter it is measured against (path None: the bare model)."""
        return _parse_adapter(self.candidate, "candidate"), _parse_adapter(self.against, "against")


@dataclass(frozen=True)
class CalibrateConfig:
    """`dialoguellm calibrate`."""

    adapter: str = field(metadata=field_help("the adapter to recalibrate, as NAME=PATH", positional=True))
    out: str = field(metadata=field_help(
        "the new adapter folder: a copy with the refitted temperatures and decision weights (a new "
        "version: serve it under a new name)", metavar="DIR"))
    sets: tuple[tuple[str, str, str | None], ...] = field(
        default=(("meld", "dev", None), ("emorynlp", "dev", None)), metadata=field_help(
            "a dev set to fit on (repeatable; default: meld:dev and emorynlp:dev); sets of one label set are "
            "fitted together; PATH: a data root, folder or file (a corrections export folder for jsonl)",
            flag="--set", parse=_parse_sets, metavar="DATASET[:SPLIT][=PATH]"))
    decision_rule: str = field(default="fitted", metadata=field_help(
        "fitted: decision weights per label set for its --objective; argmax: none",
        choices=("fitted", "argmax")))
    objectives: dict[str, str] = field(default_factory=dict, metadata=field_help(
        "what a label set's decision weights maximise (repeatable): balanced (the default: the mean of "
        "weighted-F1, macro-F1 and negative-F1) or micro_f1_without_neutral", flag="--objective",
        parse=_parse_objectives, metavar="LABEL_SET=OBJECTIVE"))
    limit: int | None = field(default=None, metadata=field_help("use the first N labelled turns of each set"))
    batch_size: int = field(default=256, metadata=field_help("turns per engine call"))
    report: str | None = field(default=None, metadata=field_help(
        "write the figures before and after as JSON here (default: OUT/calibration.json)", metavar="FILE"))
    data: str | None = data_field()
    engine: EngineConfig = field(default_factory=EngineConfig)

    def __post_init__(self) -> None:
        _positive(self, "limit", "batch_size")
        if self.engine.adapters:
            raise ConfigError("adapter: give the adapter to recalibrate as the first argument, no --adapter")
        check_objectives(self.objectives, self.decision_rule == "fitted", "objective", "--decision-rule")
        self.named_adapter()
        if Path(self.out).exists():
            raise ConfigError(f"out: {self.out} exists (a recalibrated adapter is a new folder)")

    def named_adapter(self) -> tuple[str, str]:
        """(name, path) of the adapter to recalibrate."""
        name, path = _parse_adapter(self.adapter, "adapter")
        return name, str(path)


@dataclass(frozen=True)
class AverageConfig:
    """`dialoguellm average`."""

    members: tuple[str, ...] = field(metadata=field_help(
        "the adapters to average, as NAME=PATH: two or more of one recipe (the same modules, prompt and "
        "class weights), trained with other seeds", positional=True, metavar="NAME=PATH"))
    out: str = field(metadata=field_help("the new adapter folder (then fit its serving rule with `dialoguellm "
                                         "calibrate`)", metavar="DIR"))
    rank: int | None = field(default=None, metadata=field_help(
        "cut each module's mean update to its best approximation of this rank (default: exact, the sum of "
        "the members' ranks, which engines then need as --max-lora-rank; merged on a CPU it costs nothing)"))

    def __post_init__(self) -> None:
        _positive(self, "rank")
        names = [name for name, _ in self.named_members()]
        if len(names) < 2:
            raise ConfigError(f"members: give two or more adapters to average, got {len(names)}")
        if len(set(names)) != len(names):
            raise ConfigError(f"members: each adapter needs a name of its own, got {', '.join(names)}")
        if Path(self.out).exists():
            raise ConfigError(f"out: {self.out} exists (the average is a new adapter folder)")

    def named_members(self) -> list[tuple[str, str]]:
        """(name, path) of each adapter to average."""
        return [(name, str(path)) for name, path in (_parse_adapter(m, "members") for m in self.members)]


@dataclass(frozen=True)
class DescribeConfig:
    """`dialoguellm describe`."""

    uri: str = field(metadata=field_help(
        "a video file (its folder is the video root when no --video-root is given), or an http(s) URL under a "
        "--video-allow prefix", positional=True))
    start: float = field(metadata=field_help("seconds"))
    end: float = field(metadata=field_help("seconds"))
    json: bool = field(default=False, metadata=field_help("the description, its cues and timings as JSON"))
    video: VideoPoolConfig = field(default_factory=VideoPoolConfig)

    def __post_init__(self) -> None:
        if not self.video.enabled:
            raise ConfigError("describer: 'none' describes nothing; pick cpu or vlm")
        if self.end <= self.start:
            raise ConfigError(f"end: must be after start ({self.start}), got {self.end}")


@dataclass(frozen=True)
class LabelConfig:
    """`dialoguellm label`: a manifest of turns labelled into a Parquet folder with Ray Data."""

    job: LabelJob
    engine: EngineConfig = field(default_factory=EngineConfig)
    json: bool = json_field()

    def __post_init__(self) -> None:
        _engine_served(self)


@dataclass(frozen=True)
class AlertsRunConfig:
    """`dialoguellm alerts`."""

    rules: str = field(metadata=field_help("escalation rules (YAML; see the README's 'Alerts' section)",
                                           metavar="FILE"))
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    log_format: str = log_format_field()


@dataclass(frozen=True)
class BenchEngineConfig:
    """`dialoguellm bench engine`."""

    limit: int = field(default=128, metadata=field_help("MELD test turns to time"))
    conversations: int = field(default=20, metadata=field_help(
        "MELD test conversations fed round robin, turn by turn, in the paper-against-conversation prompt rows"))
    levers: bool = field(default=True, metadata=field_help(
        "skip the second engine start that measures prefix caching off", flag="--no-levers"))
    repeats: int = field(default=3, metadata=field_help(
        "times each row is timed, the rows taking turns (every engine stays up); a row reports its fastest"))
    data: str | None = data_field()
    json: bool = json_field()
    engine: EngineConfig = field(default_factory=EngineConfig)

    def __post_init__(self) -> None:
        _positive(self, "limit", "conversations", "repeats")
        _engine_served(self)


@dataclass(frozen=True)
class BenchTrainConfig:
    """`dialoguellm bench train`."""

    device: str | None = field(default=None, metadata=field_help(
        "default: cuda when a GPU is visible, else cpu", choices=("cpu", "cuda")))
    limit: int = field(default=256, metadata=field_help("MELD train examples, one epoch each"))
    batch_size: int = field(default=16, metadata=field_help("examples per step"))
    recipe: str = field(default=str(DEFAULT_RECIPE), metadata=field_help(
        "training config whose model, LoRA shape and objective the loops use (default: the shipped adapter's)"))
    shape: str | None = field(default=None, metadata=field_help(
        "time a model of this shape with random weights instead of the recipe's model",
        choices=("llama2-7b", "smollm2-135m")))
    workdir: str | None = field(default=None, metadata=field_help(
        "where a random model is written (default: the temp folder)"))
    data: str | None = data_field()
    json: bool = json_field()

    def __post_init__(self) -> None:
        _positive(self, "limit", "batch_size")


@dataclass(frozen=True)
class BenchStreamConfig:
    """`dialoguellm bench stream`."""

    limit: int | None = field(default=None, metadata=field_help("MELD test turns (default: all 2,610)"))
    rate: float | None = field(default=None, metadata=field_help("push at this many turns/s (default: all at once)"))
    conversations: int | None = field(default=None, metadata=field_help(
        "this many live conversations at once, their turns pushed interleaved in time order (default: "
        "one conversation after another)"))
    compare_prompts: tuple[str, ...] = field(default=("dialoguellm",), metadata=field_help(
        "run the stream once per prompt given, in one run (repeatable, e.g. --compare-prompt dialoguellm "
        "--compare-prompt conversation; default: the engine's prompt alone); the conversation prompt shows "
        "every previous turn", flag="--compare-prompt", choices=PROMPTS, metavar="PROMPT"))
    data: str | None = data_field()
    json: bool = json_field()
    stream: StreamConfig = field(default_factory=lambda: StreamConfig(batch_size=128))
    pool: PoolConfig = field(default_factory=PoolConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)

    def __post_init__(self) -> None:
        _positive(self, "limit", "rate", "conversations")
        _engine_served(self)


@dataclass(frozen=True)
class BenchLabelConfig:
    """`dialoguellm bench label`."""

    limit: int | None = field(default=None, metadata=field_help("first N MELD test rows (default: all 2,610)"))
    data: str | None = data_field()
    json: bool = json_field()
    engine: EngineConfig = field(default_factory=EngineConfig)

    def __post_init__(self) -> None:
        _positive(self, "limit")
        _engine_served(self)


@dataclass(frozen=True)
class BenchVideoConfig:
    """`dialoguellm bench video`."""

    clips: int = field(default=4, metadata=field_help("generated clips of 30 s"))
    workdir: str | None = field(default=None, metadata=field_help(
        "where the clips are written (default: the temp folder)"))
    json: bool = json_field()

    def __post_init__(self) -> None:
        _positive(self, "clips")


@dataclass(frozen=True)
class BenchWatchConfig:
    """`dialoguellm bench watch`."""

    conversations: int = field(default=2000, metadata=field_help("active conversations on the page"))
    baseline: int = field(default=20, metadata=field_help("active conversations of the baseline run"))
    turns: int = field(default=10, metadata=field_help("labelled turns per conversation"))
    updates: int = field(default=20, metadata=field_help("labels timed from XADD to the page"))
    redis_url: str = redis_url_field()
    json: bool = json_field()

    def __post_init__(self) -> None:
        _positive(self, "conversations", "baseline", "turns", "updates")


@dataclass(frozen=True)
class AdaptersCommon:
    """What every `dialoguellm adapters ...` command talks to: the control stream and the workers' reports."""

    redis_url: str = redis_url_field()
    control_stream: str = control_stream_field()

    def __post_init__(self) -> None:
        check_redis_url(self.redis_url)
        if not self.control_stream:
            raise ConfigError("control_stream: must not be empty")

    def redis_keys(self) -> tuple[str, ...]:
        return (self.control_stream,)


def _wait_field() -> Any:
    return field(default=None, metadata=field_help(
        "wait up to this many seconds until every live worker has applied the message; exit 1 when one "
        "refused it or did not answer in time", metavar="S"))


@dataclass(frozen=True)
class AdaptersLoadConfig(AdaptersCommon):
    """`dialoguellm adapters load NAME PATH`."""

    name: str = field(kw_only=True, metadata=field_help(
        "the adapter's name (a new version gets a new name: a name stands for one set of files)", positional=True))
    path: str = field(kw_only=True, metadata=field_help(
        "its PEFT LoRA folder, as the workers see it, under their --adapters-root", positional=True))
    adapters_root: str | None = adapters_root_field(
        "check the folder lies under this root here too (default: the root the live workers report)")
    max_lora_rank: int | None = field(default=None, metadata=field_help(
        "the largest LoRA rank the workers serve (default: as the live workers report, else 16)"))
    wait_s: float | None = _wait_field()

    def __post_init__(self) -> None:
        super().__post_init__()
        _adapter_name(self.name)
        if not self.path:
            raise ConfigError("path: must not be empty")
        _positive(self, "wait_s", "max_lora_rank")


@dataclass(frozen=True)
class AdaptersDefaultConfig(AdaptersCommon):
    """`dialoguellm adapters default NAME [--share F]`."""

    name: str = field(kw_only=True, metadata=field_help("the adapter turns without an `adapter` field get",
                                                      positional=True))
    share: float = field(default=1.0, metadata=field_help(
        "a canary: only this share of those turns, chosen by conversation (a conversation stays on one adapter); "
        "1: NAME becomes the default"))
    wait_s: float | None = _wait_field()

    def __post_init__(self) -> None:
        super().__post_init__()
        _adapter_name(self.name)
        if not 0 < self.share <= 1:
            raise ConfigError(f"share: must be in (0, 1], got {self.share}")
        _positive(self, "wait_s")


@dataclass(frozen=True)
class AdaptersUnloadConfig(AdaptersCommon):
    """`dialoguellm adapters unload NAME`."""

    name: str = field(kw_only=True, metadata=field_help("the adapter to stop serving", positional=True))
    wait_s: float | None = _wait_field()

    def __post_init__(self) -> None:
        super().__post_init__()
        _adapter_name(self.name)
        _positive(self, "wait_s")


@dataclass(frozen=True)
class AdaptersListConfig(AdaptersCommon):
    """`dialoguellm adapters list`."""

    json: bool = field(default=False, metadata=field_help("one JSON object a line, as each worker reports it"))


def _adapter_name(name: str) -> None:
    from pipeline.core.wire import MalformedMessage, check_adapter_name

    try:
        check_adapter_name(name)
    except MalformedMessage as e:
        raise ConfigError(f"name: {e}") from None
