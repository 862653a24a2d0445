set -uo pipefail
source <(bash .gpu/unpack-debs.sh .gpu/debs /opt/osd-deps)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/gpu.txt
t0=$(date +%s)
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release >/tmp/cmake.log 2>&1 || { tail -40 /tmp/cmake.log; exit 1; }
cmake --build build-cuda --target osd-tests osd-bench osd-train >/tmp/build.log 2>&1 || { grep -E "error" -A5 /tmp/build.log | head -80; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
timeout 150 ./build-cuda/osd-tests "[cuda],[streams]" > $OUT/cuda-tests.txt 2>&1; echo "tests rc $?"
grep -E "FAILED|with expansion|share of" -A3 $OUT/cuda-tests.txt | head -30; tail -2 $OUT/cuda-tests.txt
mkdir -p $OUT/pb
timeout 250 env PHASES="shift" bash scripts/paper-bench.sh $OUT/pb 100 300 10 2>&1 \
  | grep -E "^\| (250|550|850)|tokens_per_s|distiller_overhead|record_host|decode_step|shift:|target:|draft:|build:" | grep -v "^{" | head -40
P=build-cuda/pair; C=build/corpora-paper
for v in "16 1.0" "32 1.0" "16 0.25"; do
  read -r mps duty <<< "$v"; t0=$(date +%s)
  timeout 100 ./build-cuda/osd-bench online --target $P/target --draft $P/draft --corpora $C --device cuda --dtype bfloat16 --k 4 --new-tokens 64 \
    --routes --requests 300 --window 50 --concurrency 16 --replays static shadow online --max-duty $duty --distiller-multiprocessors $mps \
    --tsv $OUT/pb/shift-mps$mps-duty$duty.tsv --json > $OUT/pb/shift-mps$mps-duty$duty.txt 2>$OUT/pb/shift-mps$mps-duty$duty.log
  echo "== multiprocessors $mps duty $duty: $(( $(date +%s) - t0 )) s"; grep -E "^\| (250|550|850)|distiller_overhead|tokens_per_s_(static|shadow|online)" $OUT/pb/shift-mps$mps-duty$duty.txt | grep -v "^{"
  grep -m2 "multiprocessors" $OUT/pb/shift-mps$mps-duty$duty.log
done
rm -f $OUT/pb/trace-shift.json.gz
cd $OUT && tar czf pb.tgz pb && rm -rf pb
