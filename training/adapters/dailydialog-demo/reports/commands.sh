# 2026-12-01 19:08:17
dialoguellm serve --redis redis://127.0.0.1:6379/0 --in-stream dd-loop:f020e1a8:turns --out-stream dd-loop:f020e1a8:labels --control-stream dd-loop:f020e1a8:control --adapters-root /work/runs/dailydialog-demo-3/adapters --log-format text --engine-timeout-per-turn-s 10 &
# 2026-12-01 19:08:36
dialoguellm push /work/runs/dailydialog-demo-3/data/first.jsonl --label-set dailydialog --redis redis://127.0.0.1:6379/0 --stream dd-loop:f020e1a8:turns
# 2026-12-01 19:10:17
dialoguellm watch --redis redis://127.0.0.1:6379/0 --labels-stream dd-loop:f020e1a8:labels --alerts-stream dd-loop:f020e1a8:alerts --in-stream dd-loop:f020e1a8:turns --port 0 --show-text --window-min 122 --keep-turns 100 --corrections --corrections-stream dd-loop:f020e1a8:corrections --tokens-file /work/runs/dailydialog-demo-3/tokens &
# 2026-12-01 19:10:20
dialoguellm corrections export --redis redis://127.0.0.1:6379/0 --corrections-stream dd-loop:f020e1a8:corrections --in-stream dd-loop:f020e1a8:turns --label-set dailydialog --out /work/runs/dailydialog-demo-3/corrections
# 2026-12-01 19:10:21
dialoguellm train --config /work/runs/dailydialog-demo-3/train/config.yaml --storage /work/runs/dailydialog-demo-3/train/ray_results
# 2026-12-01 19:25:41
dialoguellm gate --candidate dd-v1=/work/runs/dailydialog-demo-3/train/adapter --against default --corrections /work/runs/dailydialog-demo-3/corrections --report /work/runs/dailydialog-demo-3/reports/gate.json
# 2026-12-01 19:28:06
dialoguellm push /work/runs/dailydialog-demo-3/data/rest.jsonl --label-set dailydialog --redis redis://127.0.0.1:6379/0 --stream dd-loop:f020e1a8:turns --rate 6.71 &
# 2026-12-01 19:29:06
dialoguellm adapters load dd-v1 /work/runs/dailydialog-demo-3/adapters/dd-v1 --wait-s 900 --redis redis://127.0.0.1:6379/0 --control-stream dd-loop:f020e1a8:control
# 2026-12-01 19:29:18
dialoguellm adapters default dd-v1 --share 0.1 --wait-s 900 --redis redis://127.0.0.1:6379/0 --control-stream dd-loop:f020e1a8:control
# 2026-12-01 19:31:19
dialoguellm adapters default dd-v1 --wait-s 900 --redis redis://127.0.0.1:6379/0 --control-stream dd-loop:f020e1a8:control
# 2026-12-01 19:31:35
dialoguellm adapters unload default --wait-s 900 --redis redis://127.0.0.1:6379/0 --control-stream dd-loop:f020e1a8:control
# 2026-12-01 19:32:06
dialoguellm adapters list --redis redis://127.0.0.1:6379/0 --control-stream dd-loop:f020e1a8:control
# 2026-12-01 19:38:10
dialoguellm eval --dataset jsonl --data /work/runs/dailydialog-demo-3/data/rest.jsonl --label-set dailydialog --adapter dd-v1=/work/runs/dailydialog-demo-3/train/adapter --report /work/runs/dailydialog-demo-3/reports/after.json
# 2026-12-01 19:40:15
dialoguellm eval --dataset meld --split test --adapter dd-v1=/work/runs/dailydialog-demo-3/train/adapter --report /work/runs/dailydialog-demo-3/reports/meld-test-after.json
