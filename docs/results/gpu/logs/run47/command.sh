# run 47: H100; the new defaults together: serving on the whole GPU (online-serve-beside-distillers
# false), the guard's paired gain (online-guard-z 2), back-off duty, the buffer's top-k.
# Shift, batch 1 (with a record replay), the cost (3 ABBA pairs), then the [cuda] tests, whose
# build runs on the CPU while the pair trains.
set -uo pipefail
mkdir -p $OUT/pb
T0=$(date +%s)
source <(bash .gpu/unpack-debs.sh .gpu/debs /opt/osd-deps)
( timeout 395 env PHASES="shift" bash scripts/paper-bench.sh $OUT/pb 135 300 20 > $OUT/pb/paper.out 2>&1 ) &
PB=$!
while ! grep -q "^build:" $OUT/pb/paper.out 2>/dev/null && kill -0 $PB 2>/dev/null; do sleep 2; done
( cmake -S . -B build-cuda -DOSD_BUILD_TESTS=ON > $OUT/pb/tests-cmake.log 2>&1 \
  && nice cmake --build build-cuda --target osd-tests > $OUT/pb/tests-build.log 2>&1; \
  echo "tests build rc $? at $(( $(date +%s) - T0 )) s" > $OUT/pb/tests-build.rc ) &
wait $PB
grep -E "^\| (250|300|350|400|550|600|650|850)|build:|target:|draft:|shift:|total" $OUT/pb/paper.out | grep -v "^{"
cat $OUT/pb/tests-build.rc 2>/dev/null
P=build-cuda/pair; C=build/corpora-paper
echo "== shift"; python3 .gpu/summ.py $OUT/pb/shift-c16.txt
grep -hE "cannot start|unhandled|dropped" $OUT/pb/*.txt $OUT/pb/*.log | sort | uniq -c | head -5
common=(--target $P/target --draft $P/draft --corpora $C --device cuda --dtype bfloat16 --k 4 --new-tokens 64 --routes)
echo "== b1 at $(( $(date +%s) - T0 )) s"
timeout 70 ./build-cuda/osd-bench online "${common[@]}" --requests 20 --skip 300 --window 20 --concurrency 1 \
  --online-state $P/online --replays target static record online --trace $OUT/pb/trace-b1.json --json > $OUT/pb/b1.txt 2>$OUT/pb/b1.log
python3 .gpu/summ.py $OUT/pb/b1.txt; gzip -9f $OUT/pb/trace-b1*.json
echo "== cost at $(( $(date +%s) - T0 )) s"
timeout 85 ./build-cuda/osd-bench online "${common[@]}" --requests 100 --window 50 --concurrency 16 \
  --replays static shadow --repeats 3 --json > $OUT/pb/cost.txt 2>$OUT/pb/cost.log
python3 .gpu/summ.py $OUT/pb/cost.txt 2>&1 | grep -vE "decode_step|record_host" | tail -8
echo "== cuda tests at $(( $(date +%s) - T0 )) s"
cat $OUT/pb/tests-build.rc 2>/dev/null
left=$(( 550 - ($(date +%s) - T0) ))
[ $left -gt 10 ] && timeout $left ./build-cuda/osd-tests "[cuda],[streams],[transformer]" > $OUT/pb/cuda-tests.txt 2>&1; echo "tests rc $?"
grep -E "FAILED|with expansion" -A6 $OUT/pb/cuda-tests.txt | head -30; tail -2 $OUT/pb/cuda-tests.txt
grep -A3 "first update loss" $OUT/pb/cuda-tests.txt | head -5
echo "== end at $(( $(date +%s) - T0 )) s"
rm -f $OUT/pb/trace-shift*.json
cd $OUT && tar czf pb.tgz pb && rm -rf pb
