import json, sys
lines = [l for l in open(sys.argv[1]).read().splitlines() if l.startswith('{')]
if not lines: print('  no JSON in', sys.argv[1]); sys.exit(0)
d = json.loads(lines[-1]); n = d['notes']
for k, v in n.get('per_domain', {}).items():
    parts = []
    for r in ('target', 'static', 'record', 'shadow', 'online'):
        if r in v: parts.append('%s %.1fms/%.3f' % (r, v[r]['latency_ms'], v[r]['acceptance_last']))
    sp = ' sp_static %.2f sp_online %.2f' % (v['speedup_static'], v['speedup_online_last']) if 'speedup_static' in v and 'speedup_online_last' in v else ''
    print(' ', k, ' | '.join(parts), sp)
t = n.get('online_trace', {})
if t: print('  distill', json.dumps(t.get('distill')), 'rounds', json.dumps(t.get('rounds')))
st = n.get('static_trace', {})
if st: print('  static rounds', json.dumps(st.get('rounds')))
for key in ('online_decisions', 'online_distillers', 'shadow_distillers', 'online_draft_version',
            'tokens_per_s_target_only', 'tokens_per_s_static', 'tokens_per_s_record', 'tokens_per_s_shadow', 'tokens_per_s_online',
            'distiller_overhead', 'distiller_overhead_pairs', 'recording_overhead_pairs', 'distiller_overhead_parts', 'record_host_share', 'decode_step_ms'):
    if key in n and n[key] is not None: print('  %s: %s' % (key, json.dumps(n[key])))
