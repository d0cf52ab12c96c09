#!/usr/bin/env bash
# Regenerate exchanges/mexc/pb/mexc_push_pb2.py and .pyi from
# exchanges/mexc/proto/mexc_push.proto. The generated modules are committed, so this
# runs only after the .proto changes.
#
# Needs protoc from grpcio-tools, a generation-time tool only (not a runtime
# dependency). Pinned so the generated code does not drift:
#
#     pip install 'grpcio-tools==1.85.1'
#
# grpcio-tools 1.85.1 bundles libprotoc 35.1, whose Python gencode is version 7.35.1:
# the generated module refuses a protobuf runtime older than that (protobuf>=7.35.1).
# Type-checking the generated stub needs ``types-protobuf``.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"

"$PYTHON" -m grpc_tools.protoc \
    -I exchanges/mexc/proto \
    --python_out=exchanges/mexc/pb \
    --pyi_out=exchanges/mexc/pb \
    exchanges/mexc/proto/mexc_push.proto

# The generated stub writes bare ``Mapping``: relax that one check of mypy --strict there.
"$PYTHON" - <<'PY'
path = "exchanges/mexc/pb/mexc_push_pb2.pyi"
with open(path) as f:
    text = f.read()
with open(path, "w") as f:
    f.write('# mypy: disable-error-code="type-arg"\n' + text)
PY

echo "generated: exchanges/mexc/pb/mexc_push_pb2.py exchanges/mexc/pb/mexc_push_pb2.pyi"
