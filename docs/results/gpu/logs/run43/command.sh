# run 43 (same machine as run 42, its pair reused): H100; defaults now: whole-request replay, bf16 autocast, held back-off 4 doublings.
# Shift, then batch 1 twice from the same shifted state (held back-off 4 vs 2), then the cost.
set -uo pipefail
mkdir -p $OUT/pb
T0=$(date +%s)
timeout 200 env PHASES="shift" REUSE_PAIR=1 bash scripts/paper-bench.sh $OUT/pb 150 300 20 2>&1 \
  | grep -E "^\| (250|300|350|400|550|600|650|850)|build:|target:|draft:|shift:|tokens_per_s|distiller_overhead|online_decisions|total" | grep -v "^{"
P=build-cuda/pair; C=build/corpora-paper
summ() { tail -1 $1 | python3 -c "
import json,sys; d=json.loads(sys.stdin.read()); n=d['notes']
for k,v in n.get('per_domain',{}).items():
  if 'target' in v: print(k, 'target %.1f static %.1f online %.1f | sp_static %.2f sp_online %.2f acc_static %.3f acc_online %.3f' % (v['target']['latency_ms'], v['static']['latency_ms'], v['online']['latency_ms'], v['speedup_static'], v['speedup_online_last'], v['static']['acceptance_last'], v['online']['acceptance_last']))
t=n.get('online_trace',{}); print('distill', json.dumps(t.get('distill')), 'rounds', json.dumps(t.get('rounds')))
print('decisions', json.dumps(n.get('online_decisions')), 'version', json.dumps(n.get('online_draft_version')))
"; }
echo "== shift"; summ $OUT/pb/shift-c16.txt
grep -E "cannot start|unhandled" $OUT/pb/*.txt | head -5
rm -rf $P/online-hb2 && cp -r $P/online $P/online-hb2
echo "== b1 (held back-off 4) at $(( $(date +%s) - T0 )) s"
timeout 100 env PHASES="b1" REUSE_PAIR=1 bash scripts/paper-bench.sh $OUT/pb 150 300 20 > /dev/null 2>&1
summ $OUT/pb/b1.txt
common=(--target $P/target --draft $P/draft --corpora $C --device cuda --dtype bfloat16 --k 4 --new-tokens 64 --routes)
echo "== b1 (held back-off 2) at $(( $(date +%s) - T0 )) s"
timeout 60 ./build-cuda/osd-bench online "${common[@]}" --held-backoff 2 --requests 20 --skip 300 --window 20 --concurrency 1 \
  --replays target static online --online-state $P/online-hb2 --trace $OUT/pb/trace-b1-hb2.json --json > $OUT/pb/b1-hb2.txt 2>$OUT/pb/b1-hb2.log
gzip -9f $OUT/pb/trace-b1-hb2*.json
summ $OUT/pb/b1-hb2.txt
echo "== tests at $(( $(date +%s) - T0 )) s"
cmake -S . -B build-cuda -DOSD_BUILD_TESTS=ON >/dev/null 2>&1; timeout 200 cmake --build build-cuda --target osd-tests >/tmp/bt.log 2>&1 || grep -E "error" -A5 /tmp/bt.log | head
timeout 120 ./build-cuda/osd-tests "[cuda],[streams],[transformer]" > $OUT/pb/cuda-tests.txt 2>&1; echo "tests rc $?"
grep -E "FAILED|with expansion" -A6 $OUT/pb/cuda-tests.txt | head -30; tail -2 $OUT/pb/cuda-tests.txt
grep -A3 "bf16 autocast learns" $OUT/pb/cuda-tests.txt | head; grep "first update loss" -A2 $OUT/pb/cuda-tests.txt
echo "== end at $(( $(date +%s) - T0 )) s"
cd $OUT && tar czf pb.tgz pb && rm -rf pb
