set -uo pipefail
source <(bash .gpu/unpack-debs.sh .gpu/debs /opt/osd-deps)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/gpu.txt
mkdir -p $OUT/pb
t0=$(date +%s)
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release >/tmp/cmake.log 2>&1 || { tail -40 /tmp/cmake.log; exit 1; }
cmake --build build-cuda --target osd-tests osd-bench osd-train >/tmp/build.log 2>&1 || { grep -E "error" -A5 /tmp/build.log | head -80; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
timeout 120 ./build-cuda/osd-tests "[cuda],[streams]" > $OUT/pb/cuda-tests.txt 2>&1; echo "tests rc $?"
grep -E "FAILED|with expansion|greedy draft|graphed matmuls|GPU distiller" -A3 $OUT/pb/cuda-tests.txt | head -40; tail -2 $OUT/pb/cuda-tests.txt
timeout 250 env PHASES="none" bash scripts/paper-bench.sh $OUT/pb 100 300 10 2>&1 | grep -E "build:|target:|draft:"
P=build-cuda/pair; C=build/corpora-paper
common=(--target $P/target --draft $P/draft --corpora $C --device cuda --dtype bfloat16 --k 4 --new-tokens 64 --routes)
summ() { python3 -c "
import json,sys; d=json.loads(open('$1').read().strip().splitlines()[-1]); n=d['notes']
print('  tokens/s', {k: n.get('tokens_per_s_'+k) for k in ('target_only','static','online','shadow')})
print('  target graph captures', n.get('target_graph_captures'))
for k,v in n['per_domain'].items():
    if 'target' in v and 'online' in v: print('  ', k, 'target %.1f static %.1f online %.1f | acc_static %.3f acc_online %.3f' % (v['target']['latency_ms'], v['static']['latency_ms'], v['online']['latency_ms'], v['static']['acceptance_last'], v['online']['acceptance_last']))
"; }
for variant in buckets exact; do
  envs=X=1; [ $variant = exact ] && envs=OSD_GRAPH_BUCKETS=0
  t0=$(date +%s)
  timeout 90 env $envs ./build-cuda/osd-bench online "${common[@]}" --requests 300 --window 50 --concurrency 16 --replays target static online \
    --online-state $P/online-$variant --tsv $OUT/pb/shift-$variant.tsv --json > $OUT/pb/shift-$variant.txt 2>$OUT/pb/shift-$variant.log
  echo "== shift $variant: $(( $(date +%s) - t0 )) s"; grep -E "^\| (550|850)" $OUT/pb/shift-$variant.txt; summ $OUT/pb/shift-$variant.txt
  rm -rf $P/b1-$variant && cp -r $P/online-$variant $P/b1-$variant
  timeout 40 env $envs ./build-cuda/osd-bench online "${common[@]}" --requests 10 --skip 300 --window 10 --concurrency 1 --online-state $P/b1-$variant \
    --replays target static online --json > $OUT/pb/b1-$variant.txt 2>&1
  echo "== b1 $variant"; summ $OUT/pb/b1-$variant.txt
done
t0=$(date +%s)
timeout 95 ./build-cuda/osd-bench online "${common[@]}" --requests 300 --window 50 --concurrency 16 --replays static shadow --repeats 3 \
    --json > $OUT/pb/cost.txt 2>$OUT/pb/cost.log
echo "== cost: $(( $(date +%s) - t0 )) s"; grep -E "distiller_overhead_pairs|tokens_per_s_(static|shadow)" $OUT/pb/cost.txt | grep -v "^{"
cd $OUT && tar czf pb.tgz pb && rm -rf pb
