set -uo pipefail
source <(bash .gpu/unpack-debs.sh .gpu/debs /opt/osd-deps)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/gpu.txt
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
t0=$(date +%s)
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release >/tmp/cmake.log 2>&1 || { tail -40 /tmp/cmake.log; exit 1; }
cmake --build build-cuda --target osd-tests osd-bench osd-train >/tmp/build.log 2>&1 || { grep -E "error" -A5 /tmp/build.log | head -80; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
grep -iE "ptxas|spill|registers" /tmp/build.log | head
timeout 200 ./build-cuda/osd-tests "[cuda],[streams]" > $OUT/cuda-tests.txt 2>&1; echo "tests rc $?"
grep -E "FAILED|with expansion|WARN|warning" -A3 $OUT/cuda-tests.txt | head -40; tail -2 $OUT/cuda-tests.txt
run() { local name=$1; shift; echo "== $name"; env "$@" timeout 100 ./build-cuda/osd-bench model --device cuda --dtype bfloat16 --sizes 10m 100m tinyllama-1b --batches 1 16 --json > $OUT/model-$name.txt 2>&1; grep "^|" $OUT/model-$name.txt | cut -d'|' -f2,3,4,9,10,11; }
run torch OSD_KERNELS=torch
run cublas-nopdl OSD_GEMV_MAX_ELEMENTS=0 OSD_PDL=0
run gemv8m-nopdl OSD_PDL=0
run gemv8m-pdl OSD_PDL=1
run gemvall-nopdl OSD_GEMV_MAX_ELEMENTS=1000000000000 OSD_PDL=0
run gemvall-pdl OSD_GEMV_MAX_ELEMENTS=1000000000000 OSD_PDL=1
