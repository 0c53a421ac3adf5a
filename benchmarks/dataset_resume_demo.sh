#!/usr/bin/env bash
# 500 demo scenes through `vexplain explain MODEL DIR --out OUT`, SIGKILLed mid-run and rerun, on
# the local engine and on Ray: checks exactly 500 x methods rows, no duplicate (image, method),
# and every shard committed before the kill unchanged by the rerun.
#
#     benchmarks/dataset_resume_demo.sh [IMAGES] [ENGINES]      (defaults: 500 "local ray")
#
# VEXPLAIN (default: vexplain on PATH) and PYTHON (default: python) name the CLI and interpreter.
# The killed run's whole process tree is killed by process id (a Ray driver's raylet, GCS and
# workers are its descendants), so no Ray process outlives the script.
set -euo pipefail
IMAGES=${1:-500}
ENGINES=${2:-local ray}
VEXPLAIN=${VEXPLAIN:-vexplain}
PYTHON=${PYTHON:-python}
METHODS=gradcam,saliency
SHARD=20
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export RAY_USAGE_STATS_ENABLED=0

WEIGHTS=$("$PYTHON" - "$WORK/scenes" "$IMAGES" <<'PY'
import sys
from pathlib import Path
import cv2, numpy as np
from vexplain.demo.model import ASSETS, WEIGHTS_FILE
from vexplain.demo.scenes import CLASS_NAMES, generate_scene
folder, count = Path(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
for number in range(count):
    scene = generate_scene(rng)
    sub = folder / CLASS_NAMES[scene.label]
    sub.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(sub / f"scene{number:04d}.png"), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
print(ASSETS / WEIGHTS_FILE)
PY
)

descendants() {  # every process below $1, deepest last
    local child
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        echo "$child"
        descendants "$child"
    done
}

committed() {  # shards listed in OUT's manifest (0 before the first commit)
    "$PYTHON" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["shards"]))' "$1/_vexplain_run.json" 2>/dev/null || echo 0
}

for ENGINE in $ENGINES; do
    OUT="$WORK/out-$ENGINE"
    COMMAND=("$VEXPLAIN" explain vexplain.demo.model:build "$WORK/scenes" --weights "$WEIGHTS" --out "$OUT" --methods "$METHODS" --shard-size "$SHARD" --engine "$ENGINE")
    echo "== $ENGINE: ${COMMAND[*]//$WORK/WORK}"
    START=$(date +%s.%N)
    "${COMMAND[@]}" >"$WORK/first-$ENGINE.log" 2>&1 &
    DRIVER=$!
    while kill -0 "$DRIVER" 2>/dev/null && [ "$(committed "$OUT")" -lt 1 ]; do sleep 0.2; done
    TREE=$(descendants "$DRIVER")
    kill -KILL "$DRIVER" 2>/dev/null || true
    for PID in $TREE; do kill -KILL "$PID" 2>/dev/null || true; done
    wait "$DRIVER" 2>/dev/null || true
    KILLED=$(date +%s.%N)
    BEFORE=$(committed "$OUT")
    SHARDS=$(( (IMAGES + SHARD - 1) / SHARD ))
    echo "SIGKILL after $(printf %.1f "$(echo "$KILLED - $START" | bc)") s with $BEFORE of $SHARDS shards committed"
    [ "$BEFORE" -ge 1 ] && [ "$BEFORE" -lt "$SHARDS" ] || { echo "FAIL: not killed mid-run"; cat "$WORK/first-$ENGINE.log"; exit 1; }
    alive() { for PID in $TREE; do ps -o stat= -p "$PID" 2>/dev/null | grep -qv Z && echo "$PID"; done || true; }
    for _ in $(seq 50); do [ -z "$(alive)" ] && break; sleep 0.2; done  # SIGKILLed processes take a moment to exit
    LEFT=$(alive)
    [ -z "$LEFT" ] || { echo "FAIL: processes of the killed run still alive: $LEFT"; exit 1; }
    "$PYTHON" - "$OUT" >"$WORK/kept-$ENGINE.json" <<'PY'
import hashlib, json, sys
from pathlib import Path
out = Path(sys.argv[1])
shards = json.loads((out / "_vexplain_run.json").read_text())["shards"]
print(json.dumps({name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in shards}))
PY
    RESUMED=$(date +%s.%N)
    "${COMMAND[@]}" 2>"$WORK/resume-$ENGINE.log"
    echo "rerun took $(printf %.1f "$(echo "$(date +%s.%N) - $RESUMED" | bc)") s"
    "$PYTHON" - "$OUT" "$IMAGES" "$METHODS" "$WORK/kept-$ENGINE.json" <<'PY'
import hashlib, json, sys
from pathlib import Path
import pyarrow.parquet as pq
out, images, methods, kept = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(","), json.loads(Path(sys.argv[4]).read_text())
table = pq.read_table(out)
keys = list(zip(table.column("image").to_pylist(), table.column("method").to_pylist()))
same = all(hashlib.sha256((out / name).read_bytes()).hexdigest() == digest for name, digest in kept.items())
print(f"rows {len(keys)} (expected {images * len(methods)}), distinct (image, method) {len(set(keys))}, images {len({k[0] for k in keys})}, shards kept from the killed run unchanged: {same}")
sys.exit(0 if len(keys) == len(set(keys)) == images * len(methods) and same else 1)
PY
    echo "OK $ENGINE"
done
