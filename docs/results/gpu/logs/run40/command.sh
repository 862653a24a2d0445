# run 40: H100; whole-request replay + bf16 autocast in the distillers (new defaults) against the
# old distiller (--replay-requests false --distill-autocast false), same pair, same machine.
set -uo pipefail
mkdir -p $OUT/pb
T0=$(date +%s)
timeout 420 env PHASES="shift b1" bash scripts/paper-bench.sh $OUT/pb 150 300 20 2>&1 \
  | grep -E "^\| (250|300|350|550|600|650|850)|build:|target:|draft:|shift:|batch 1|tokens_per_s|distiller_overhead|online_decisions|total" | grep -v "^{"
P=build-cuda/pair; C=build/corpora-paper
summ() { tail -1 $1 | python3 -c "
import json,sys; d=json.loads(sys.stdin.read()); n=d['notes']
if 'per_domain' in n:
  for k,v in n['per_domain'].items():
    print(k, 'target %.1f static %.1f online %.1f | sp_static %.2f sp_online %.2f acc_static %.3f acc_online %.3f' % (v['target']['latency_ms'], v['static']['latency_ms'], v['online']['latency_ms'], v['speedup_static'], v['speedup_online_last'], v['static']['acceptance_last'], v['online']['acceptance_last']))
t=n.get('online_trace',{}); print('distill', json.dumps(t.get('distill')), 'rounds', json.dumps(t.get('rounds')))
print('decisions', json.dumps(n.get('online_decisions')), 'version', json.dumps(n.get('online_draft_version')))
"; }
echo "== new b1"; summ $OUT/pb/b1.txt
echo "== new shift"; summ $OUT/pb/shift-c16.txt
echo "== old distiller at $(( $(date +%s) - T0 )) s"
common=(--target $P/target --draft $P/draft --corpora $C --device cuda --dtype bfloat16 --k 4 --new-tokens 64 --routes)
old=(--replay-requests false --distill-autocast false)
rm -rf $P/online-old
timeout 120 ./build-cuda/osd-bench online "${common[@]}" "${old[@]}" --requests 300 --window 50 --concurrency 16 \
  --replays static online --online-state $P/online-old --trace $OUT/pb/trace-shift-old.json --tsv $OUT/pb/shift-old.tsv --json \
  > $OUT/pb/shift-old.txt 2>$OUT/pb/shift-old.log
grep -E "^\| (250|300|350|550|600|650|850)" $OUT/pb/shift-old.txt; summ $OUT/pb/shift-old.txt
timeout 60 ./build-cuda/osd-bench online "${common[@]}" "${old[@]}" --requests 20 --skip 300 --window 20 --concurrency 1 \
  --replays target static online --online-state $P/online-old --json > $OUT/pb/b1-old.txt 2>$OUT/pb/b1-old.log
echo "== old b1"; summ $OUT/pb/b1-old.txt
echo "== cost at $(( $(date +%s) - T0 )) s"
timeout $(( 592 - ($(date +%s) - T0) )) ./build-cuda/osd-bench online "${common[@]}" --requests 100 --window 50 --concurrency 16 --replays static shadow --repeats 3 \
    --json > $OUT/pb/cost.txt 2>$OUT/pb/cost.log
grep -E "distiller_overhead_pairs|tokens_per_s_(static|shadow)" $OUT/pb/cost.txt | grep -v "^{"
echo "== end at $(( $(date +%s) - T0 )) s"
rm -f $OUT/pb/trace-shift*.json
cd $OUT && tar czf pb.tgz pb && rm -rf pb
