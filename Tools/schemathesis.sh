#!/usr/bin/env bash
# Run schemathesis (PyPI, in the reference venv) against `deberta serve` on fixture models: every route of
# Sources/Serving/openapi.json, checks: no 5xx, documented status codes and content types, responses that
# match their schemas.
#
#   swift build -c release --product deberta
#   Tools/schemathesis.sh                      # the default fixtures, 100 examples per operation
#   Tools/schemathesis.sh --max-examples 300   # more (extra arguments go to `schemathesis run`)
#
# Environment: DEBERTA (the binary, default .build/release/deberta), SCHEMATHESIS_MODELS (fixture names).
# Exit status: non-zero when any run found a failure.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="$("$repo/Tools/reference_env.sh")"
schemathesis="$(dirname "$python")/schemathesis"
deberta="${DEBERTA:-$repo/.build/release/deberta}"
[ -x "$deberta" ] || { echo "schemathesis.sh: $deberta is missing; run: swift build -c release --product deberta" >&2; exit 2; }
models=(${SCHEMATHESIS_MODELS:-v2-conv-seqcls v3-mlm v2-sep-c2p-tokcls v2-qa-sharded})
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--max-examples 100)

work="$(mktemp -d)"
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

cd "$work"  # schemathesis keeps its example database in the working directory
status=0
for model in "${models[@]}"; do
    dir="$repo/Fixtures/models/$model"
    [ -d "$dir" ] || { echo "schemathesis.sh: no fixture $dir" >&2; exit 2; }
    # a small payload limit so that generated requests also reach the 413 path
    "$deberta" serve "$dir" --port 0 --threads 2 --payload-limit 65536 > "$work/out" 2> "$work/err" &
    pid=$!
    for _ in $(seq 1 300); do
        grep -q 'listening on' "$work/out" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || { cat "$work/err" >&2; exit 1; }
        sleep 0.1
    done
    url="$(sed -n 's/.*listening on //p' "$work/out" | head -1)"
    echo "== $model at $url" >&2
    if ! "$schemathesis" --no-color run "$url/openapi.json" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
        --phases examples,coverage,fuzzing --workers 2 --request-timeout 60 --suppress-health-check too_slow,filter_too_much \
        "${args[@]}"; then
        status=1
    fi
    kill -TERM "$pid"
    wait "$pid" || { echo "schemathesis.sh: the server on $model did not exit 0" >&2; status=1; }
    pid=""
    if grep -q 'Fatal error\|Crash\|fatal' "$work/err"; then cat "$work/err" >&2; status=1; fi
done
exit $status
