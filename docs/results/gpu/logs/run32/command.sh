set -uo pipefail
source <(bash .gpu/unpack-debs.sh .gpu/debs /opt/osd-deps)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/gpu.txt
mkdir -p $OUT/pb
t0=$(date +%s)
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release >/tmp/cmake.log 2>&1 || { tail -40 /tmp/cmake.log; exit 1; }
cmake --build build-cuda --target osd-tests osd-bench osd-train >/tmp/build.log 2>&1 || { grep -E "error" -A5 /tmp/build.log | head -80; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
grep -iE "spill|ptxas.*gemv_mma" /tmp/build.log | head -5
timeout 120 ./build-cuda/osd-tests "[cuda],[streams]" > $OUT/pb/cuda-tests.txt 2>&1; echo "tests rc $?"
grep -E "FAILED|with expansion" -A6 $OUT/pb/cuda-tests.txt | head -40; tail -2 $OUT/pb/cuda-tests.txt
timeout 250 env PHASES="none" bash scripts/paper-bench.sh $OUT/pb 100 300 10 2>&1 | grep -E "build:|target:|draft:"
P=build-cuda/pair; C=build/corpora-paper
for mma in 1 0; do
  OSD_GEMV_MMA=$mma timeout 90 ./build-cuda/osd-bench model --device cuda --dtype bfloat16 --sizes $P/target $P/draft 100m tinyllama-1b --batches 1 --tokens 1 5 8 --steps 64 --json > $OUT/pb/model-mma$mma.txt 2>&1
  echo "== model, OSD_GEMV_MMA=$mma (graph step ms)"; grep -E "^\| " $OUT/pb/model-mma$mma.txt | cut -d'|' -f2,4,5,11
done
common=(--target $P/target --draft $P/draft --corpora $C --device cuda --dtype bfloat16 --k 4 --new-tokens 64 --routes)
t0=$(date +%s)
timeout 80 ./build-cuda/osd-bench online "${common[@]}" --requests 300 --window 50 --concurrency 16 --replays target static online \
    --online-state $P/online --json > $OUT/pb/shift.txt 2>$OUT/pb/shift.log
echo "== shift: $(( $(date +%s) - t0 )) s"; grep -E "^\| (550|850)|tokens_per_s_(target|static|online)" $OUT/pb/shift.txt | grep -v "^{"
for mma in 1 0; do
  rm -rf $P/b1-$mma && cp -r $P/online $P/b1-$mma
  timeout 40 env OSD_GEMV_MMA=$mma ./build-cuda/osd-bench online "${common[@]}" --requests 10 --skip 300 --window 10 --concurrency 1 --online-state $P/b1-$mma \
    --replays target static online --trace $OUT/pb/trace-b1-mma$mma.json --json > $OUT/pb/b1-mma$mma.txt 2>&1
  echo "== b1 OSD_GEMV_MMA=$mma"; tail -1 $OUT/pb/b1-mma$mma.txt | python3 -c "
import json,sys; d=json.loads(sys.stdin.read()); n=d['notes']
for k,v in n['per_domain'].items():
    print(k, 'target %.1f static %.1f online %.1f | sp_static %.2f sp_online %.2f acc_static %.3f acc_online %.3f' % (v['target']['latency_ms'], v['static']['latency_ms'], v['online']['latency_ms'], v['speedup_static'], v['speedup_online_last'], v['static']['acceptance_last'], v['online']['acceptance_last']))
r=n['static_trace'].get('rounds'); o=n['online_trace'].get('rounds')
print('static propose %.3f verify %.3f n %d | online propose %.3f verify %.3f n %d' % (r['propose'], r['verify'], r['count'], o['propose'], o['verify'], o['count']))"
done
gzip -9 $OUT/pb/trace-b1-*.json 2>/dev/null
cd $OUT && tar czf pb.tgz pb && rm -rf pb
