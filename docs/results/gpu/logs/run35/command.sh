# run 35: H100, commit 6802e8f (working tree as committed), carried .gpu/
set -uo pipefail
mkdir -p $OUT/pb
T0=$(date +%s)
source <(bash .gpu/unpack-debs.sh .gpu/debs /opt/osd-deps)
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release >/tmp/cmake.log 2>&1 || { tail -40 /tmp/cmake.log; exit 1; }
cmake --build build-cuda --target osd-tests osd-bench osd-train >/tmp/build.log 2>&1 || { grep -E "error" -A5 /tmp/build.log | head -80; exit 1; }
echo "build: $(( $(date +%s) - T0 )) s"
timeout 90 ./build-cuda/osd-tests "[cuda],[streams]" > $OUT/pb/cuda-tests.txt 2>&1; echo "tests rc $?"
grep -E "FAILED|with expansion" -A6 $OUT/pb/cuda-tests.txt | head -30; tail -2 $OUT/pb/cuda-tests.txt
export TARGET_STEPS=700
timeout 230 env PHASES="none" bash scripts/paper-bench.sh $OUT/pb 150 300 10 2>&1 | grep -E "target:|draft:|total|wrote"
P=build-cuda/pair; C=build/corpora-paper
echo "== shift at $(( $(date +%s) - T0 )) s"
timeout 100 env REUSE_PAIR=1 PHASES="shift" bash scripts/paper-bench.sh $OUT/pb 150 300 10 2>&1 \
  | grep -E "^\| (250|550|600|850)|tokens_per_s|distiller_overhead|shift:" | grep -v "^{"
rm -f $OUT/pb/trace-shift*.json.gz
common=(--target $P/target --draft $P/draft --corpora $C --device cuda --dtype bfloat16 --k 4 --new-tokens 64 --routes)
b1() { local name=$1 envs=$2 n=$3; shift 3; rm -rf $P/b1-$name && cp -r $P/online $P/b1-$name
  timeout 60 env $envs ./build-cuda/osd-bench online "${common[@]}" --skip 300 --concurrency 1 --online-state $P/b1-$name \
    --replays target static online --requests $n --window $n "$@" --trace $OUT/pb/trace-b1-$name.json --json > $OUT/pb/b1-$name.txt 2>&1
  gzip -9f $OUT/pb/trace-b1-$name*.json
  echo "== b1 $name at $(( $(date +%s) - T0 )) s"; tail -1 $OUT/pb/b1-$name.txt | python3 -c "
import json,sys; d=json.loads(sys.stdin.read()); n=d['notes']
for k,v in n['per_domain'].items():
    print(k, 'target %.1f static %.1f online %.1f | sp_static %.2f sp_online %.2f acc_static %.3f acc_online %.3f' % (v['target']['latency_ms'], v['static']['latency_ms'], v['online']['latency_ms'], v['speedup_static'], v['speedup_online_last'], v['static']['acceptance_last'], v['online']['acceptance_last']))
r=n['static_trace'].get('rounds'); o=n['online_trace'].get('rounds')
print('static propose %.3f verify %.3f hops %.3f n %d' % (r['propose'], r['verify'], r['hop_to_propose']+r['hop_to_verify'], r['count']))
print('online propose %.3f verify %.3f hops %.3f n %d' % (o['propose'], o['verify'], o['hop_to_propose']+o['hop_to_verify'], o['count']))"; }
b1 default X=1 20
b1 cold X=1 10 --warm-attention-plans false
echo "== cost at $(( $(date +%s) - T0 )) s"
timeout 80 ./build-cuda/osd-bench online "${common[@]}" --requests 100 --window 50 --concurrency 16 --replays static shadow --repeats 2 \
    --json > $OUT/pb/cost.txt 2>$OUT/pb/cost.log
grep -E "distiller_overhead_pairs|tokens_per_s_(static|shadow)" $OUT/pb/cost.txt | grep -v "^{"
echo "== end at $(( $(date +%s) - T0 )) s"
cd $OUT && tar czf pb.tgz pb && rm -rf pb
