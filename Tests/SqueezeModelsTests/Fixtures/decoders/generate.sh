#!/usr/bin/env bash
# Regenerates the decoder parity fixtures next to this script and checks them by reloading.
#
#   Tests/SqueezeModelsTests/Fixtures/decoders/generate.sh [--check-only]
#
# Creates .cache/torch-venv (torch, transformers, numpy from PyPI) when it is missing, like
# Benchmarks/bert/run.sh; torch and transformers are never dependencies of squeeze itself.
# Other versions than the ones in expected.json's "transformers_version" / "torch_version"
# may move the logits by float32 rounding.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../../.." && pwd)"
venv="$repo/.cache/torch-venv"

if ! "$venv/bin/python" -c "import torch, transformers, numpy, safetensors" 2>/dev/null; then
    echo "== creating $venv (torch, transformers, numpy)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet torch transformers numpy
fi
if [[ "${1:-}" == "--check-only" ]]; then
    exec "$venv/bin/python" "$here/generate.py" --check-only
fi
exec "$venv/bin/python" "$here/generate.py" --check
