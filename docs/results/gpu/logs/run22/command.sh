set -uo pipefail
source <(bash .gpu/unpack-debs.sh .gpu/debs /opt/osd-deps)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/gpu.txt
mkdir -p $OUT/pb
timeout 330 env PHASES="shift b1" DISTILLER_MPS=16 bash scripts/paper-bench.sh $OUT/pb 100 300 10 2>&1 \
  | grep -E "^\| |tokens_per_s|distiller_overhead|decode_step|shift:|target:|draft:|build:|batch 1" | grep -v "^{" | head -60
P=build-cuda/pair; C=build/corpora-paper
for v in "0 32" "16 32" "16 8" "0 8"; do
  read -r mps conn <<< "$v"; t0=$(date +%s)
  CUDA_DEVICE_MAX_CONNECTIONS=$conn timeout 100 ./build-cuda/osd-bench online --target $P/target --draft $P/draft --corpora $C --device cuda --dtype bfloat16 --k 4 --new-tokens 64 \
    --routes --requests 300 --window 50 --concurrency 16 --replays static shadow online --distiller-multiprocessors $mps \
    --tsv $OUT/pb/shift-mps$mps-conn$conn.tsv --json > $OUT/pb/shift-mps$mps-conn$conn.txt 2>$OUT/pb/shift-mps$mps-conn$conn.log
  echo "== multiprocessors $mps connections $conn: $(( $(date +%s) - t0 )) s"; grep -E "^\| (550|850)|distiller_overhead|tokens_per_s_(static|shadow|online)" $OUT/pb/shift-mps$mps-conn$conn.txt | grep -v "^{"
done
rm -f $OUT/pb/trace-shift.json.gz $OUT/pb/trace-b1.json.gz
cd $OUT && tar czf pb.tgz pb && rm -rf pb
