set -uo pipefail
source <(bash .gpu/unpack-debs.sh .gpu/debs /opt/osd-deps)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/gpu.txt
t0=$(date +%s)
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release >/tmp/cmake.log 2>&1 || { tail -40 /tmp/cmake.log; exit 1; }
cmake --build build-cuda --target osd-tests osd-bench osd-train >/tmp/build.log 2>&1 || { grep -E "error" -A5 /tmp/build.log | head -80; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
timeout 120 ./build-cuda/osd-tests "[cuda]" > $OUT/cuda-tests.txt 2>&1; echo "tests rc $?"
grep -E "FAILED|with expansion" -A3 $OUT/cuda-tests.txt | head -30; tail -2 $OUT/cuda-tests.txt
OSD_GEMV_VARIANT=5 timeout 60 ./build-cuda/osd-tests "fused GEMV*,graphed fused*,fused and libtorch*" > $OUT/cuda-tests-v5.txt 2>&1; echo "v5 tests rc $?"; tail -2 $OUT/cuda-tests-v5.txt
run() { local name=$1; shift; echo "== $name"; env "$@" timeout 60 ./build-cuda/osd-bench model --device cuda --dtype bfloat16 --sizes 10m 100m tinyllama-1b --batches 1 --json > $OUT/model-$name.txt 2>&1; grep "^|" $OUT/model-$name.txt | cut -d'|' -f2,4,10,11 | tail -n +3; }
run cublas-nopdl OSD_GEMV_MAX_ELEMENTS=0 OSD_PDL=0
run v0-nopdl OSD_PDL=0
run v0-pdl OSD_PDL=1
run v5-pdl OSD_PDL=1 OSD_GEMV_VARIANT=5
mkdir -p $OUT/pb
timeout 330 env PHASES="shift duty" DUTIES="0.1" DUTY_REPLAYS="static record shadow online" bash scripts/paper-bench.sh $OUT/pb 100 300 10 2>&1 \
  | grep -E "^\| (250|550|850)|tokens_per_s|distiller_overhead|record_host|decode_step|shift:|target:|draft:|build:|duty" | grep -v "^{" | head -40
P=build-cuda/pair
for v in pdl nopdl; do
  rm -rf $P/online-$v && cp -r $P/online $P/online-$v
  [ $v = nopdl ] && export OSD_PDL=0
  timeout 40 ./build-cuda/osd-bench online --target $P/target --draft $P/draft --corpora build/corpora-paper --device cuda --dtype bfloat16 --k 4 --new-tokens 64 --routes --requests 10 --skip 300 --window 10 --concurrency 1 --online-state $P/online-$v --replays target static online --json > $OUT/pb/b1-$v.txt 2>&1
  echo "== b1 $v"; grep -E "^\| " $OUT/pb/b1-$v.txt | head -8; tail -1 $OUT/pb/b1-$v.txt | python3 -c "import json,sys; d=json.loads(sys.stdin.read()); n=d['notes']; print({k:(v.get('speedup_static'),v.get('speedup_online_last'),v['target']['latency_ms'],v['online']['latency_ms_last']) for k,v in n['per_domain'].items()}, n['decode_step_ms'])"
done
rm -f $OUT/pb/trace-shift.json.gz
cd $OUT && tar czf pb.tgz pb && rm -rf pb
