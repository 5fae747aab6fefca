#!/usr/bin/env bash
# Generates the Python message and gRPC stubs of proto/topdeck/resilience/v1
# into OUT_DIR (default: topdeck_resilience/_gen, which is committed), with
# Debian's protoc and grpc_python_plugin (protobuf-compiler,
# protobuf-compiler-grpc). The modules land flat in OUT_DIR and import each
# other package-relatively (`from . import resilience_pb2`), so the SDK needs
# no sys.path edits and cannot clash with another copy of the stubs.
#
#   clients/python/gen.sh [OUT_DIR]        # or: make python-generate
#
# tests/test_generated.py regenerates into a temporary directory and fails
# when the committed stubs differ.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
proto_dir="$(cd "$here/../../proto" && pwd)"
out="${1:-$here/topdeck_resilience/_gen}"

for tool in protoc grpc_python_plugin; do
  command -v "$tool" >/dev/null || { echo "gen.sh: $tool not found: apt-get install protobuf-compiler protobuf-compiler-grpc" >&2; exit 3; }
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
protos=()
while IFS= read -r f; do protos+=("$f"); done < <(cd "$proto_dir" && find topdeck/resilience/v1 -name '*.proto' | sort)
protoc -I "$proto_dir" \
  --python_out="$tmp" --pyi_out="$tmp" --grpc_python_out="$tmp" \
  --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" \
  "${protos[@]}"

mkdir -p "$out"
rm -f "$out"/*_pb2.py "$out"/*_pb2.pyi "$out"/*_pb2_grpc.py
for f in "$tmp"/topdeck/resilience/v1/*; do
  # Package-relative imports between the generated modules.
  sed -e 's/^from topdeck\.resilience\.v1 import \(.*_pb2\) as /from . import \1 as /' \
      -e 's/^import topdeck\.resilience\.v1\.\(.*_pb2\) as /from . import \1 as /' \
    "$f" > "$out/$(basename "$f")"
done
cat > "$out/__init__.py" <<'PY'
"""Generated gRPC stubs of topdeck.resilience.v1 (clients/python/gen.sh; never edit by hand)."""
PY
