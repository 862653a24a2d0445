# run 33: H100, commit b12f3a5 (working tree as committed), carried .gpu/
set -uo pipefail
mkdir -p $OUT/pb
T0=$(date +%s)
export TARGET="22 2048 32 5632 4" TARGET_LR=3e-4 TARGET_BATCH=16 TARGET_STEPS=700 DRAFT_SECONDS=30
timeout 330 env PHASES="none" bash scripts/paper-bench.sh $OUT/pb 150 300 10 2>&1 | grep -vE "^\{" | tail -25
P=build-cuda/pair; C=build/corpora-paper
grep -E "^\{" $OUT/pb/train-target.txt | tail -1 | cut -c1-400
timeout 45 ./build-cuda/osd-bench model --device cuda --dtype bfloat16 --sizes $P/target $P/draft --batches 1 16 --tokens 1 5 8 --steps 32 --json > $OUT/pb/model.txt 2>&1
echo "== model (graph step ms) at $(( $(date +%s) - T0 )) s"; grep -E "^\| " $OUT/pb/model.txt | head -20
timeout 175 env REUSE_PAIR=1 PHASES="shift b1" bash scripts/paper-bench.sh $OUT/pb 150 300 10 2>&1 \
  | grep -E "^\| |tokens_per_s|distiller_overhead|shift:|batch 1" | grep -v "^{" | head -40
tail -1 $OUT/pb/b1.txt | python3 -c "
import json,sys; d=json.loads(sys.stdin.read()); n=d['notes']
for k,v in n['per_domain'].items():
    print(k, 'target %.1f static %.1f online %.1f | sp_static %.2f sp_online %.2f acc_static %.3f acc_online %.3f' % (v['target']['latency_ms'], v['static']['latency_ms'], v['online']['latency_ms'], v['speedup_static'], v['speedup_online_last'], v['static']['acceptance_last'], v['online']['acceptance_last']))
r=n['static_trace'].get('rounds'); o=n['online_trace'].get('rounds')
print('static propose %.3f verify %.3f n %d | online propose %.3f verify %.3f n %d' % (r['propose'], r['verify'], r['count'], o['propose'], o['verify'], o['count']))"
rm -f $OUT/pb/trace-shift*.json.gz
echo "== hf at $(( $(date +%s) - T0 )) s"
timeout $(( 585 - ($(date +%s) - T0) )) env REUSE_PAIR=1 PHASES="hf" bash scripts/paper-bench.sh $OUT/pb 150 300 3 2>&1 | grep -vE "^\{|build:|pair:" | tail -12
echo "== end at $(( $(date +%s) - T0 )) s"
