set -uo pipefail
source <(bash .gpu/unpack-debs.sh .gpu/debs /opt/osd-deps)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/gpu.txt
mkdir -p $OUT/pb
t0=$(date +%s)
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release >/tmp/cmake.log 2>&1 || { tail -40 /tmp/cmake.log; exit 1; }
cmake --build build-cuda --target osd-tests osd-bench osd-train >/tmp/build.log 2>&1 || { grep -E "error" -A5 /tmp/build.log | head -80; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
timeout 120 ./build-cuda/osd-tests "[cuda],[streams]" > $OUT/pb/cuda-tests.txt 2>&1; echo "tests rc $?"
grep -E "FAILED|with expansion|share of|greedy draft|graphed matmuls" -A3 $OUT/pb/cuda-tests.txt | head -40; tail -2 $OUT/pb/cuda-tests.txt
timeout 250 env PHASES="none" bash scripts/paper-bench.sh $OUT/pb 100 300 10 2>&1 | grep -E "build:|target:|draft:"
P=build-cuda/pair; C=build/corpora-paper
common=(--target $P/target --draft $P/draft --corpora $C --device cuda --dtype bfloat16 --k 4 --new-tokens 64 --routes)
shift_run() { local name=$1 replays=$2; shift 2; t0=$(date +%s)
  timeout 120 ./build-cuda/osd-bench online "${common[@]}" --requests 300 --window 50 --concurrency 16 --replays $replays --repeats 2 \
    --online-state $P/online-$name --tsv $OUT/pb/shift-$name.tsv "$@" --json > $OUT/pb/shift-$name.txt 2>$OUT/pb/shift-$name.log
  echo "== shift $name: $(( $(date +%s) - t0 )) s"; grep -E "^\| (550|850)|distiller_overhead|tokens_per_s_(static|shadow|online)" $OUT/pb/shift-$name.txt | grep -v "^{"; }
shift_run beside "target static shadow online"
shift_run whole "static shadow online" --serve-beside-distillers false
b1() { local name=$1 envs=$2; shift 2; rm -rf $P/b1-$name && cp -r $P/online-beside $P/b1-$name
  timeout 40 env $envs ./build-cuda/osd-bench online "${common[@]}" --requests 10 --skip 300 --window 10 --concurrency 1 --online-state $P/b1-$name \
    --replays target static online "$@" --trace $OUT/pb/trace-b1-$name.json --json > $OUT/pb/b1-$name.txt 2>&1
  echo "== b1 $name"; tail -1 $OUT/pb/b1-$name.txt | python3 -c "
import json,sys; d=json.loads(sys.stdin.read()); n=d['notes']
for k,v in n['per_domain'].items():
    print(k, 'target %.1f static %.1f online %.1f | sp_static %.2f sp_online %.2f acc_static %.3f acc_online %.3f' % (v['target']['latency_ms'], v['static']['latency_ms'], v['online']['latency_ms'], v['speedup_static'], v['speedup_online_last'], v['static']['acceptance_last'], v['online']['acceptance_last']))
print(n['decode_step_ms']); print('static rounds', n['static_trace'].get('rounds')); print('online rounds', n['online_trace'].get('rounds')); print('online busy', n['online_trace'].get('busy_ms'))"; }
b1 default X=1
b1 stepwise OSD_GREEDY_DRAFT_GRAPH=0
b1 whole-gpu X=1 --serve-beside-distillers false
gzip -9 $OUT/pb/trace-b1-*.json 2>/dev/null
cd $OUT && tar czf pb.tgz pb && rm -rf pb
