set -uo pipefail
source <(bash .gpu/unpack-debs.sh .gpu/debs /opt/osd-deps)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/gpu.txt
mkdir -p $OUT/pb
timeout 260 env PHASES="none" bash scripts/paper-bench.sh $OUT/pb 100 300 10 2>&1 | grep -E "build:|target:|draft:"
P=build-cuda/pair; C=build/corpora-paper
common=(--target $P/target --draft $P/draft --corpora $C --device cuda --dtype bfloat16 --k 4 --new-tokens 64 --routes)
cost() { local name=$1 envs=$2; shift 2; t0=$(date +%s)
  timeout 95 env $envs ./build-cuda/osd-bench online "${common[@]}" --requests 300 --window 50 --concurrency 16 --replays static shadow --repeats 3 "$@" \
    --json > $OUT/pb/cost-$name.txt 2>$OUT/pb/cost-$name.log
  echo "== cost $name: $(( $(date +%s) - t0 )) s"; grep -E "distiller_overhead_pairs|tokens_per_s_(static|shadow)" $OUT/pb/cost-$name.txt | grep -v "^{"; tail -2 $OUT/pb/cost-$name.log; }
cost beside X=1
cost whole X=1 --serve-beside-distillers false
cost beside-threads2-passive "OSD_THREADS=2 OMP_WAIT_POLICY=PASSIVE"
t0=$(date +%s)
timeout 80 ./build-cuda/osd-bench online "${common[@]}" --requests 300 --window 50 --concurrency 16 --replays static online \
    --online-state $P/online --json > $OUT/pb/shift.txt 2>$OUT/pb/shift.log
echo "== shift: $(( $(date +%s) - t0 )) s"; grep -E "^\| (550|850)|tokens_per_s_(static|online)" $OUT/pb/shift.txt | grep -v "^{"
b1() { local name=$1 envs=$2; shift 2; rm -rf $P/b1-$name && cp -r $P/online $P/b1-$name
  timeout 40 env $envs ./build-cuda/osd-bench online "${common[@]}" --requests 10 --skip 300 --window 10 --concurrency 1 --online-state $P/b1-$name \
    --replays target static online "$@" --trace $OUT/pb/trace-b1-$name.json --json > $OUT/pb/b1-$name.txt 2>&1
  echo "== b1 $name"; tail -1 $OUT/pb/b1-$name.txt | python3 -c "
import json,sys; d=json.loads(sys.stdin.read()); n=d['notes']
for k,v in n['per_domain'].items():
    print(k, 'target %.1f static %.1f online %.1f | sp_static %.2f sp_online %.2f acc_static %.3f acc_online %.3f' % (v['target']['latency_ms'], v['static']['latency_ms'], v['online']['latency_ms'], v['speedup_static'], v['speedup_online_last'], v['static']['acceptance_last'], v['online']['acceptance_last']))
r=n['static_trace'].get('rounds'); o=n['online_trace'].get('rounds')
print('static propose %.3f verify %.3f n %d | online propose %.3f verify %.3f n %d' % (r['propose'], r['verify'], r['count'], o['propose'], o['verify'], o['count']))"; }
b1 default X=1
b1 threads2 OSD_THREADS=2
b1 passive OMP_WAIT_POLICY=PASSIVE
b1 threads2-passive "OSD_THREADS=2 OMP_WAIT_POLICY=PASSIVE"
gzip -9 $OUT/pb/trace-b1-*.json 2>/dev/null
cd $OUT && tar czf pb.tgz pb && rm -rf pb
