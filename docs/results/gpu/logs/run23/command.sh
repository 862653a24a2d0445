set -uo pipefail
source <(bash .gpu/unpack-debs.sh .gpu/debs /opt/osd-deps)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/gpu.txt
echo "CUDA_DEVICE_MAX_CONNECTIONS in the environment: '${CUDA_DEVICE_MAX_CONNECTIONS:-}'"
t0=$(date +%s)
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release >/tmp/cmake.log 2>&1 || { tail -40 /tmp/cmake.log; exit 1; }
cmake --build build-cuda --target osd-tests osd-bench osd-train >/tmp/build.log 2>&1 || { grep -E "error" -A5 /tmp/build.log | head -80; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
timeout 150 ./build-cuda/osd-tests "[cuda],[streams]" > $OUT/cuda-tests.txt 2>&1; echo "tests rc $?"
grep -E "FAILED|with expansion|share of|GPU distiller" -A3 $OUT/cuda-tests.txt | head -30; tail -2 $OUT/cuda-tests.txt
timeout 60 ./build-cuda/osd-bench model --device cuda --dtype bfloat16 --sizes 10m 100m tinyllama-1b --batches 1 16 --json > $OUT/model-final.txt 2>&1; grep "^|" $OUT/model-final.txt
mkdir -p $OUT/pb
timeout 240 env PHASES="shift b1" bash scripts/paper-bench.sh $OUT/pb 100 300 10 2>&1 \
  | grep -E "^\| |tokens_per_s|distiller_overhead|decode_step|shift:|target:|draft:|build:|batch 1" | grep -v "^{" | head -60
P=build-cuda/pair; C=build/corpora-paper
t0=$(date +%s)
timeout 120 python3 scripts/hf_assisted.py --target $P/target --draft $P/draft --corpora $C --prompts 10 --skip 300 --new-tokens 64 --json $OUT/pb/hf.json 2>$OUT/pb/hf.err | grep -v "^{"; tail -2 $OUT/pb/hf.err
echo "hf: $(( $(date +%s) - t0 )) s"
rm -f $OUT/pb/trace-shift.json.gz
cd $OUT && tar czf pb.tgz pb && rm -rf pb
