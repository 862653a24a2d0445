# run 38: H100, commit 298c9b1 (working tree as committed), carried .gpu/. The b1 phase and the cost run were cut by their timeouts.
set -uo pipefail
mkdir -p $OUT/pb
T0=$(date +%s)
# A wider draft (2 layers of dim 1024, ~25M) with the default 1B target: shift, batch 1, cost.
timeout 420 env DRAFT="2 1024 16" PHASES="shift b1" bash scripts/paper-bench.sh $OUT/pb 150 300 20 2>&1 \
  | grep -E "^\| (250|550|600|850)|build:|target:|draft:|shift:|batch 1|tokens_per_s|distiller_overhead|total" | grep -v "^{"
P=build-cuda/pair; C=build/corpora-paper
tail -1 $OUT/pb/b1.txt | python3 -c "
import json,sys; d=json.loads(sys.stdin.read()); n=d['notes']
for k,v in n['per_domain'].items():
    print(k, 'target %.1f static %.1f online %.1f | sp_static %.2f sp_online %.2f acc_static %.3f acc_online %.3f' % (v['target']['latency_ms'], v['static']['latency_ms'], v['online']['latency_ms'], v['speedup_static'], v['speedup_online_last'], v['static']['acceptance_last'], v['online']['acceptance_last']))
print(n['decode_step_ms']); r=n['static_trace'].get('rounds'); o=n['online_trace'].get('rounds')
print('static propose %.3f verify %.3f hops %.3f n %d' % (r['propose'], r['verify'], r['hop_to_propose']+r['hop_to_verify'], r['count']))
print('online propose %.3f verify %.3f hops %.3f n %d' % (o['propose'], o['verify'], o['hop_to_propose']+o['hop_to_verify'], o['count']))"
rm -f $OUT/pb/trace-shift*.json.gz
common=(--target $P/target --draft $P/draft --corpora $C --device cuda --dtype bfloat16 --k 4 --new-tokens 64 --routes)
echo "== cost at $(( $(date +%s) - T0 )) s"
timeout 75 ./build-cuda/osd-bench online "${common[@]}" --requests 100 --window 50 --concurrency 16 --replays static shadow --repeats 3 \
    --json > $OUT/pb/cost.txt 2>$OUT/pb/cost.log
grep -E "distiller_overhead_pairs|tokens_per_s_(static|shadow)" $OUT/pb/cost.txt | grep -v "^{"
echo "== end at $(( $(date +%s) - T0 )) s"
cd $OUT && tar czf pb.tgz pb && rm -rf pb
