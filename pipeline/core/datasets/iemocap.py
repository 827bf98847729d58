"""IEMOCAP (Busso et al., 2008), bring your own copy, in the common per-dialogue JSON form.

`IEMOCAP/{train,dev,test}_data.json`: a list of dialogues (or a map dialogue id → dialogue), each a
list of `{"text", "speaker", "label"}`, labels among neutral, frustrated, angry, sad, happy, excited
(or their short forms neu, fru, ang, sad, hap, exc).
"""

from pipeline.core.datasets.base import DatasetSpec, read_dialogue_list

IEMOCAP = DatasetSpec(
    name="iemocap",
    label_set="iemocap",
    folder="IEMOCAP",
    files={s: f"{s}_data.json" for s in ("train", "dev", "test")},
    reader=read_dialogue_list,
)
