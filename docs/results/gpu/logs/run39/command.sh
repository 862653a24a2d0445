# run 39: H100, commit d0c0b50 (the final code), carried .gpu/: [cuda], [streams] and [transformer] tests
set -uo pipefail
T0=$(date +%s)
source <(bash .gpu/unpack-debs.sh .gpu/debs /opt/osd-deps)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release >/tmp/cmake.log 2>&1 || { tail -40 /tmp/cmake.log; exit 1; }
cmake --build build-cuda --target osd-tests >/tmp/build.log 2>&1 || { grep -E "error" -A5 /tmp/build.log | head -80; exit 1; }
echo "build: $(( $(date +%s) - T0 )) s"
timeout 120 ./build-cuda/osd-tests "[cuda],[streams],[transformer]" > $OUT/cuda-tests.txt 2>&1; echo "tests rc $?"
grep -E "FAILED|with expansion" -A6 $OUT/cuda-tests.txt | head -30; tail -2 $OUT/cuda-tests.txt
echo "== end at $(( $(date +%s) - T0 )) s"
