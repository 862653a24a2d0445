set -uo pipefail
source <(bash .gpu/unpack-debs.sh .gpu/debs /opt/osd-deps)
nvidia-smi --query-gpu=name --format=csv,noheader
t0=$(date +%s)
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_FLAGS="-Xptxas -v" >/tmp/cmake.log 2>&1 || { tail -40 /tmp/cmake.log; exit 1; }
cmake --build build-cuda --target osd-tests osd-bench osd-train >/tmp/build.log 2>&1 || { grep -E "error" -A5 /tmp/build.log | head -80; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
grep -A2 "Compiling entry function.*gemv.*sm_90" /tmp/build.log | grep -E "entry|Used|spill" | sed 's/.*gemv_kernel/gemv_kernel/' | cut -c1-150
timeout 200 ./build-cuda/osd-tests "[cuda]" > $OUT/cuda-tests.txt 2>&1; echo "tests rc $?"
grep -E "FAILED|with expansion" -A3 $OUT/cuda-tests.txt | head -30; tail -2 $OUT/cuda-tests.txt
run() { local name=$1; shift; echo "== $name"; env "$@" timeout 100 ./build-cuda/osd-bench model --device cuda --dtype bfloat16 --sizes 100m tinyllama-1b --batches 1 --json > $OUT/model-$name.txt 2>&1; grep "^|" $OUT/model-$name.txt | cut -d'|' -f2,4,10,11 | tail -n +3; }
run cublas OSD_GEMV_MAX_ELEMENTS=0
for v in 0 1 2 3 4; do run v$v-all OSD_GEMV_VARIANT=$v OSD_GEMV_MAX_ELEMENTS=1000000000000; done
