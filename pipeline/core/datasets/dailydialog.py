"""DailyDialog (Li et al., 2017) in the DAG-ERC JSON form; its `none` label reads as `neutral`."""

from pipeline.core.datasets.base import DatasetSpec, read_dialogue_list

DAILYDIALOG = DatasetSpec(
    name="dailydialog",
    label_set="dailydialog",
    folder="DailyDialog",
    files={s: f"{s}_data.json" for s in ("train", "dev", "test")},
    reader=read_dialogue_list,
)
