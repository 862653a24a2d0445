set -uo pipefail
source <(bash .gpu/unpack-debs.sh .gpu/debs /opt/osd-deps)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/gpu.txt
mkdir -p $OUT/pb
timeout 280 env PHASES="none" bash scripts/paper-bench.sh $OUT/pb 100 300 10 2>&1 | grep -E "build:|target:|draft:"
P=build-cuda/pair; C=build/corpora-paper
common=(--target $P/target --draft $P/draft --corpora $C --device cuda --dtype bfloat16 --k 4 --new-tokens 64 --routes)
for mps in 16 8; do
  t0=$(date +%s)
  timeout 150 ./build-cuda/osd-bench online "${common[@]}" --requests 300 --window 50 --concurrency 16 --replays static shadow online --repeats 3 \
    --distiller-multiprocessors $mps --online-state $P/online-mps$mps --tsv $OUT/pb/shift-mps$mps.tsv --json > $OUT/pb/shift-mps$mps.txt 2>$OUT/pb/shift-mps$mps.log
  echo "== multiprocessors $mps: $(( $(date +%s) - t0 )) s"; grep -E "^\| (550|850)|distiller_overhead|tokens_per_s_(static|shadow|online)" $OUT/pb/shift-mps$mps.txt | grep -v "^{"
done
for variant in fixed adaptive; do
  flags=(); [ $variant = adaptive ] && flags+=(--adaptive-k)
  rm -rf $P/b1-$variant && cp -r $P/online-mps16 $P/b1-$variant
  timeout 40 ./build-cuda/osd-bench online "${common[@]}" --requests 10 --skip 300 --window 10 --concurrency 1 --online-state $P/b1-$variant \
    --replays target static online "${flags[@]}" --json > $OUT/pb/b1-$variant.txt 2>&1
  echo "== b1 $variant"; tail -1 $OUT/pb/b1-$variant.txt | python3 -c "
import json,sys; d=json.loads(sys.stdin.read()); n=d['notes']
for k,v in n['per_domain'].items():
    print(k, 'target %.1f static %.1f online %.1f | sp_static %.2f sp_online %.2f acc_online %.3f' % (v['target']['latency_ms'], v['static']['latency_ms'], v['online']['latency_ms'], v['speedup_static'], v['speedup_online_last'], v['online']['acceptance_last']))
print(n['decode_step_ms'])"
done
cd $OUT && tar czf pb.tgz pb && rm -rf pb
