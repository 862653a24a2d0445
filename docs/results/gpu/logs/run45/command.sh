# run 45: H100; the back-off caps a backed-off route's duty (osd.online-backoff-duty, new default).
# Shift (defaults), then batch 1 three ways from one shifted state (defaults with a record replay;
# backoff-duty off; serving on the whole GPU), then the cost with record replays, 3 pairs ABBA.
set -uo pipefail
mkdir -p $OUT/pb
T0=$(date +%s)
timeout 420 env PHASES="shift" bash scripts/paper-bench.sh $OUT/pb 150 300 20 2>&1 \
  | grep -E "^\| (250|300|350|400|550|600|650|850)|build:|target:|draft:|shift:|total" | grep -v "^{"
P=build-cuda/pair; C=build/corpora-paper
echo "== shift"; python3 .gpu/summ.py $OUT/pb/shift-c16.txt
grep -E "cannot start|unhandled" $OUT/pb/*.txt $OUT/pb/*.log | head -5
rm -rf $P/online-base && cp -r $P/online $P/online-base
common=(--target $P/target --draft $P/draft --corpora $C --device cuda --dtype bfloat16 --k 4 --new-tokens 64 --routes)
b1() { local name=$1; shift; rm -rf $P/online-$name; cp -r $P/online-base $P/online-$name
  echo "== b1 $name at $(( $(date +%s) - T0 )) s"
  timeout 80 ./build-cuda/osd-bench online "${common[@]}" --requests 20 --skip 300 --window 20 --concurrency 1 \
    --online-state $P/online-$name --trace $OUT/pb/trace-b1-$name.json --json "$@" > $OUT/pb/b1-$name.txt 2>$OUT/pb/b1-$name.log
  python3 .gpu/summ.py $OUT/pb/b1-$name.txt; gzip -9f $OUT/pb/trace-b1-$name*.json; }
b1 default --replays target static record online
b1 nobackoffduty --replays static online --backoff-duty false
b1 whole --replays static online --serve-beside-distillers false
echo "== cost at $(( $(date +%s) - T0 )) s"
timeout $(( 590 - ($(date +%s) - T0) )) ./build-cuda/osd-bench online "${common[@]}" --requests 100 --window 50 --concurrency 16 \
  --replays static record shadow --repeats 3 --json > $OUT/pb/cost.txt 2>$OUT/pb/cost.log
python3 .gpu/summ.py $OUT/pb/cost.txt
echo "== end at $(( $(date +%s) - T0 )) s"
rm -f $OUT/pb/trace-shift*.json
cd $OUT && tar czf pb.tgz pb && rm -rf pb
