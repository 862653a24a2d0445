# run 37: H100, commit 6802e8f (working tree as committed), carried .gpu/
set -uo pipefail
mkdir -p $OUT/pb
T0=$(date +%s)
# The distillers on 8 multiprocessors instead of 16: adaptation (shift) and cost (3 pairs), with
# 3 pairs at 16 in the same run; then batch 1 after the 8-SM shift.
timeout 420 env DISTILLER_MPS=8 PHASES="shift b1" bash scripts/paper-bench.sh $OUT/pb 150 300 20 2>&1 \
  | grep -E "^\| (250|550|600|850)|build:|target:|draft:|shift:|batch 1|tokens_per_s|distiller_overhead|total" | grep -v "^{"
P=build-cuda/pair; C=build/corpora-paper
tail -1 $OUT/pb/b1.txt | python3 -c "
import json,sys; d=json.loads(sys.stdin.read()); n=d['notes']
for k,v in n['per_domain'].items():
    print(k, 'target %.1f static %.1f online %.1f | sp_static %.2f sp_online %.2f acc_static %.3f acc_online %.3f' % (v['target']['latency_ms'], v['static']['latency_ms'], v['online']['latency_ms'], v['speedup_static'], v['speedup_online_last'], v['static']['acceptance_last'], v['online']['acceptance_last']))"
rm -f $OUT/pb/trace-*.json.gz
common=(--target $P/target --draft $P/draft --corpora $C --device cuda --dtype bfloat16 --k 4 --new-tokens 64 --routes)
for mps in 8 16; do
  echo "== cost, $mps multiprocessors, at $(( $(date +%s) - T0 )) s"
  timeout 75 ./build-cuda/osd-bench online "${common[@]}" --requests 100 --window 50 --concurrency 16 --replays static shadow --repeats 3 \
      --distiller-multiprocessors $mps --json > $OUT/pb/cost-mps$mps.txt 2>$OUT/pb/cost-mps$mps.log
  grep -E "distiller_overhead_pairs|tokens_per_s_(static|shadow)" $OUT/pb/cost-mps$mps.txt | grep -v "^{"
done
echo "== end at $(( $(date +%s) - T0 )) s"
cd $OUT && tar czf pb.tgz pb && rm -rf pb
