set -uo pipefail
source <(bash .gpu/unpack-debs.sh .gpu/debs /opt/osd-deps)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/gpu.txt
mkdir -p $OUT/pb
t0=$(date +%s)
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release >/tmp/cmake.log 2>&1 || { tail -40 /tmp/cmake.log; exit 1; }
cmake --build build-cuda --target osd-tests osd-bench osd-train >/tmp/build.log 2>&1 || { grep -E "error" -A5 /tmp/build.log | head -80; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
timeout 120 ./build-cuda/osd-tests "[cuda],[streams]" > $OUT/pb/cuda-tests.txt 2>&1; echo "tests rc $?"
grep -E "FAILED|with expansion|share of|greedy draft|graphed matmuls|GPU distiller" -A3 $OUT/pb/cuda-tests.txt | head -40; tail -2 $OUT/pb/cuda-tests.txt
timeout 330 env PHASES="shift b1" bash scripts/paper-bench.sh $OUT/pb 100 300 10 2>&1 \
  | grep -E "^\| |tokens_per_s|distiller_overhead|decode_step|shift:|target:|draft:|build:|batch 1" | grep -v "^{" | head -60
P=build-cuda/pair; C=build/corpora-paper
tail -1 $OUT/pb/b1.txt | python3 -c "
import json,sys; d=json.loads(sys.stdin.read()); n=d['notes']
for k,v in n['per_domain'].items():
    print(k, 'target %.1f static %.1f online %.1f | sp_static %.2f sp_online %.2f acc_static %.3f acc_online %.3f' % (v['target']['latency_ms'], v['static']['latency_ms'], v['online']['latency_ms'], v['speedup_static'], v['speedup_online_last'], v['static']['acceptance_last'], v['online']['acceptance_last']))
r=n['static_trace'].get('rounds'); o=n['online_trace'].get('rounds')
print('static propose %.3f verify %.3f n %d | online propose %.3f verify %.3f n %d' % (r['propose'], r['verify'], r['count'], o['propose'], o['verify'], o['count']))"
common=(--target $P/target --draft $P/draft --corpora $C --device cuda --dtype bfloat16 --k 4 --new-tokens 64 --routes)
t0=$(date +%s)
timeout 95 ./build-cuda/osd-bench online "${common[@]}" --requests 300 --window 50 --concurrency 16 --replays static shadow --repeats 3 \
    --json > $OUT/pb/cost.txt 2>$OUT/pb/cost.log
echo "== cost: $(( $(date +%s) - t0 )) s"; grep -E "distiller_overhead_pairs|tokens_per_s_(static|shadow)" $OUT/pb/cost.txt | grep -v "^{"
rm -f $OUT/pb/trace-shift*.json.gz
cd $OUT && tar czf pb.tgz pb && rm -rf pb
