# run 36: H100, commit 6802e8f (working tree as committed), carried .gpu/
set -uo pipefail
mkdir -p $OUT/pb
T0=$(date +%s)
# The benchmark with its defaults (TinyLlama-1.1B-shaped target), then HF on 3 prompts a domain,
# then the distiller's cost over 3 static/shadow pairs.
timeout 440 env PHASES="shift b1" bash scripts/paper-bench.sh $OUT/pb 150 300 20 2>&1 \
  | grep -E "^\| (250|550|600|850)|build:|target:|draft:|shift:|batch 1|tokens_per_s|distiller_overhead|total" | grep -v "^{"
P=build-cuda/pair; C=build/corpora-paper
tail -1 $OUT/pb/b1.txt | python3 -c "
import json,sys; d=json.loads(sys.stdin.read()); n=d['notes']
for k,v in n['per_domain'].items():
    print(k, 'target %.1f static %.1f online %.1f | sp_static %.2f sp_online %.2f acc_static %.3f acc_online %.3f' % (v['target']['latency_ms'], v['static']['latency_ms'], v['online']['latency_ms'], v['speedup_static'], v['speedup_online_last'], v['static']['acceptance_last'], v['online']['acceptance_last']))
r=n['static_trace'].get('rounds'); o=n['online_trace'].get('rounds')
print('static propose %.3f verify %.3f hops %.3f n %d' % (r['propose'], r['verify'], r['hop_to_propose']+r['hop_to_verify'], r['count']))
print('online propose %.3f verify %.3f hops %.3f n %d' % (o['propose'], o['verify'], o['hop_to_propose']+o['hop_to_verify'], o['count']))"
rm -f $OUT/pb/trace-shift*.json.gz
echo "== cost at $(( $(date +%s) - T0 )) s"
common=(--target $P/target --draft $P/draft --corpora $C --device cuda --dtype bfloat16 --k 4 --new-tokens 64 --routes)
timeout 75 ./build-cuda/osd-bench online "${common[@]}" --requests 100 --window 50 --concurrency 16 --replays static shadow --repeats 3 \
    --json > $OUT/pb/cost.txt 2>$OUT/pb/cost.log
grep -E "distiller_overhead_pairs|tokens_per_s_(static|shadow)" $OUT/pb/cost.txt | grep -v "^{"
echo "== hf at $(( $(date +%s) - T0 )) s"
timeout $(( 590 - ($(date +%s) - T0) )) env REUSE_PAIR=1 PHASES="hf" bash scripts/paper-bench.sh $OUT/pb 150 300 3 2>&1 | grep -E "speedup" | tail -4
echo "== end at $(( $(date +%s) - T0 )) s"
cd $OUT && tar czf pb.tgz pb && rm -rf pb
