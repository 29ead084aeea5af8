#!/bin/sh
# Regenerates Sources/CSentencePieceModel from Tools/sentencepiece_model.proto with protoc-c
# (Debian: protobuf-c-compiler; the runtime library is libprotobuf-c-dev). The generated files are
# committed, so building the package does not need protoc-c.
set -eu
cd "$(dirname "$0")/.."
command -v protoc-c >/dev/null 2>&1 || { echo "protoc-c not found (apt-get install protobuf-c-compiler)" >&2; exit 1; }
out=Sources/CSentencePieceModel
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
protoc-c --proto_path=Tools --c_out="$tmp" Tools/sentencepiece_model.proto
mkdir -p "$out/include"
cp "$tmp/sentencepiece_model.pb-c.h" "$out/include/sentencepiece_model.pb-c.h"
cp "$tmp/sentencepiece_model.pb-c.c" "$out/sentencepiece_model.pb-c.c"
echo "generated $out/sentencepiece_model.pb-c.c and $out/include/sentencepiece_model.pb-c.h ($(protoc-c --version | head -1))"
