#!/usr/bin/env bash
# benchmarks/gpu.py on the lent GPU machine (issue 18), in one call of the device tool.
#
# That machine has torch (2.11, CUDA), pytest, pytest-xdist, hypothesis, tensorboard, xarray,
# scipy, pandas, matplotlib and tqdm, no internet, and none of pyro-ppl, pyro-api, nflows,
# arviz (with platformdirs, xarray-einstats, h5netcdf) or zuko. So:
#
#   bash benchmarks/gpu_device.sh prepare     # here: the missing wheels into .whl/ (for Python
#                                             # 3.12) and binarized_mnist.npz into .devdata/,
#                                             # both ignored through .git/info/exclude
#   device run: command "bash benchmarks/gpu_device.sh run [gpu.py's options]", carry
#               [".whl", ".devdata"], timeout_s 600; the output comes back as gpu.txt under the
#               call's files. The whole script may take longer than one command may run (600 s:
#               torch.compile's plain sides take minutes), so make two calls, back to back while
#               the machine is warm:
#                   bash benchmarks/gpu_device.sh run --skip steps mnist     # tests, vae, diffusion
#                   bash benchmarks/gpu_device.sh run --skip tests vae diffusion
#
# probgen is installed there without dependency checks (its torch bound is newer than 2.11).
set -euo pipefail

versions="pyro-ppl==1.9.2 pyro-api==0.1.2 arviz==0.23.4 platformdirs==4.14.8 xarray-einstats==0.9.1 h5netcdf==1.8.2
          zuko==1.6.0"

case "${1:-}" in
prepare)
    for folder in /.whl/ /.devdata/; do
        grep -qxF "$folder" .git/info/exclude 2>/dev/null || echo "$folder" >> .git/info/exclude
    done
    mkdir -p .whl .devdata
    # shellcheck disable=SC2086
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl $versions
    python3 -m pip wheel -q --no-deps -w .whl nflows==0.14  # published as source only; pure Python
    cp "${PROBGEN_DATA:-../shared/data}/binarized_mnist.npz" .devdata/
    ls -la .whl .devdata
    ;;
run)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 PROBGEN_SHARED_DATA="$PWD/.devdata"
    python3 -m pip install -q --no-index --no-deps --no-build-isolation .
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
    shift
    python3 benchmarks/gpu.py --root .devdata "$@" 2>&1 | tee "${OUT:-.}/gpu.txt"
    ;;
*)
    echo "usage: bash benchmarks/gpu_device.sh prepare|run" >&2
    exit 2
    ;;
esac
