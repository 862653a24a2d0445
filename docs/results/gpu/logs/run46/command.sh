# run 46: H100; the buffer takes the top-k of a round's logits on its own stream (the verifier only
# copies them); deferred updates back off the records a route waits for. Shift (defaults), batch 1
# with a record replay, then the cost at concurrency 16 with serving beside the distillers
# (default) and on the whole GPU, ABBA pairs.
set -uo pipefail
mkdir -p $OUT/pb
T0=$(date +%s)
timeout 400 env PHASES="shift" bash scripts/paper-bench.sh $OUT/pb 135 300 20 2>&1 \
  | grep -E "^\| (250|300|350|400|550|600|650|850)|build:|target:|draft:|shift:|total" | grep -v "^{"
P=build-cuda/pair; C=build/corpora-paper
echo "== shift"; python3 .gpu/summ.py $OUT/pb/shift-c16.txt
grep -hE "cannot start|unhandled|dropped" $OUT/pb/*.txt $OUT/pb/*.log | sort | uniq -c | head -5
common=(--target $P/target --draft $P/draft --corpora $C --device cuda --dtype bfloat16 --k 4 --new-tokens 64 --routes)
echo "== b1 at $(( $(date +%s) - T0 )) s"
timeout 80 ./build-cuda/osd-bench online "${common[@]}" --requests 20 --skip 300 --window 20 --concurrency 1 \
  --online-state $P/online --replays target static record online --trace $OUT/pb/trace-b1.json --json > $OUT/pb/b1.txt 2>$OUT/pb/b1.log
python3 .gpu/summ.py $OUT/pb/b1.txt; gzip -9f $OUT/pb/trace-b1*.json
for mode in beside whole; do
  echo "== cost ($mode) at $(( $(date +%s) - T0 )) s"
  flag=true; [ $mode = whole ] && flag=false
  left=$(( 590 - ($(date +%s) - T0) ))
  timeout $left ./build-cuda/osd-bench online "${common[@]}" --requests 100 --window 50 --concurrency 16 \
    --replays static shadow --repeats $([ $mode = beside ] && echo 3 || echo 2) --serve-beside-distillers $flag \
    --json > $OUT/pb/cost-$mode.txt 2>$OUT/pb/cost-$mode.log
  python3 .gpu/summ.py $OUT/pb/cost-$mode.txt 2>&1 | grep -vE "decode_step|record_host" | tail -8
done
echo "== end at $(( $(date +%s) - T0 )) s"
rm -f $OUT/pb/trace-shift*.json
cd $OUT && tar czf pb.tgz pb && rm -rf pb
