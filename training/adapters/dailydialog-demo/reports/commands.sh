# 2026-12-01 15:02:04
dialoguellm serve --redis redis://127.0.0.1:6379/0 --in-stream dd-loop:ab1e85b3:turns --out-stream dd-loop:ab1e85b3:labels --control-stream dd-loop:ab1e85b3:control --adapters-root /work/runs/dailydialog-demo/adapters --log-format text --engine-timeout-per-turn-s 10 &
# 2026-12-01 15:02:56
dialoguellm push /work/runs/dailydialog-demo/data/first.jsonl --label-set dailydialog --redis redis://127.0.0.1:6379/0 --stream dd-loop:ab1e85b3:turns
# 2026-12-01 15:14:20
dialoguellm watch --redis redis://127.0.0.1:6379/0 --labels-stream dd-loop:ab1e85b3:labels --alerts-stream dd-loop:ab1e85b3:alerts --in-stream dd-loop:ab1e85b3:turns --port 0 --show-text --window-min 131 --keep-turns 100 --corrections --corrections-stream dd-loop:ab1e85b3:corrections --tokens-file /work/runs/dailydialog-demo/tokens &
# 2026-12-01 15:18:56
dialoguellm watch --redis redis://127.0.0.1:6379/0 --labels-stream dd-loop:ab1e85b3:labels --alerts-stream dd-loop:ab1e85b3:alerts --in-stream dd-loop:ab1e85b3:turns --port 0 --show-text --window-min 136 --keep-turns 100 --corrections --corrections-stream dd-loop:ab1e85b3:corrections --tokens-file /work/runs/dailydialog-demo/tokens &
# 2026-12-01 15:19:06
dialoguellm corrections export --redis redis://127.0.0.1:6379/0 --corrections-stream dd-loop:ab1e85b3:corrections --in-stream dd-loop:ab1e85b3:turns --label-set dailydialog --out /work/runs/dailydialog-demo/corrections
# 2026-12-01 15:19:07
dialoguellm train --config /work/runs/dailydialog-demo/train/config.yaml --storage /work/runs/dailydialog-demo/train/ray_results
# 2026-12-01 15:55:57
dialoguellm gate --candidate dd-v1=/work/runs/dailydialog-demo/train/adapter --against default --corrections /work/runs/dailydialog-demo/corrections --report /work/runs/dailydialog-demo/reports/gate.json
# 2026-12-01 16:07:14
dialoguellm eval --dataset jsonl --data /work/runs/dailydialog-demo/data/rest.jsonl --label-set dailydialog --adapter dd-v1=/work/runs/dailydialog-demo/train/adapter --report /work/runs/dailydialog-demo/reports/after.json
# 2026-12-01 16:11:13
dialoguellm train --config /work/runs/dailydialog-demo/train/config.yaml --storage /work/runs/dailydialog-demo/train/ray_results
# 2026-12-01 16:33:12
dialoguellm gate --candidate dd-v1=/work/runs/dailydialog-demo/train/adapter --against default --corrections /work/runs/dailydialog-demo/corrections --report /work/runs/dailydialog-demo/reports/gate.json
# 2026-12-01 16:39:26
dialoguellm serve --redis redis://127.0.0.1:6379/0 --in-stream dd-loop:ab1e85b3:turns --out-stream dd-loop:ab1e85b3:labels --control-stream dd-loop:ab1e85b3:control --adapters-root /work/runs/dailydialog-demo/adapters --log-format text --engine-timeout-per-turn-s 10 &
# 2026-12-01 16:39:54
dialoguellm push /work/runs/dailydialog-demo/data/rest.jsonl --label-set dailydialog --redis redis://127.0.0.1:6379/0 --stream dd-loop:ab1e85b3:turns --rate 6.71 &
# 2026-12-01 16:40:54
dialoguellm adapters load dd-v1 /work/runs/dailydialog-demo/adapters/dd-v1 --wait-s 900 --redis redis://127.0.0.1:6379/0 --control-stream dd-loop:ab1e85b3:control
# 2026-12-01 16:41:19
dialoguellm adapters default dd-v1 --share 0.1 --wait-s 900 --redis redis://127.0.0.1:6379/0 --control-stream dd-loop:ab1e85b3:control
# 2026-12-01 16:43:20
dialoguellm adapters default dd-v1 --wait-s 900 --redis redis://127.0.0.1:6379/0 --control-stream dd-loop:ab1e85b3:control
# 2026-12-01 16:43:50
dialoguellm adapters unload default --wait-s 900 --redis redis://127.0.0.1:6379/0 --control-stream dd-loop:ab1e85b3:control
# 2026-12-01 16:45:11
dialoguellm adapters list --redis redis://127.0.0.1:6379/0 --control-stream dd-loop:ab1e85b3:control
# 2026-12-01 16:50:25
dialoguellm eval --dataset jsonl --data /work/runs/dailydialog-demo/data/rest.jsonl --label-set dailydialog --adapter dd-v1=/work/runs/dailydialog-demo/train/adapter --report /work/runs/dailydialog-demo/reports/after.json
# 2026-12-01 16:56:31
dialoguellm eval --dataset meld --split test --adapter dd-v1=/work/runs/dailydialog-demo/train/adapter --report /work/runs/dailydialog-demo/reports/meld-test-after.json
