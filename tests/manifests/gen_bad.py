# Regenerates tests/manifests/bad/: one defect per file, each expectation frozen from the
# message caramba gives (review every message by eye before committing a regeneration).
# Usage: CARAMBA_BIN=build/caramba python3 tests/manifests/gen_bad.py
import os, random
D = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'bad')
BASE = '''version: 1
name: bad
vars:
  d: 64
model:
  type: TransformerModel
  embedder: {type: token, vocab_size: 256, d_model: 64}
  tied_embeddings: false
  topology:
    type: StackedTopology
    layers:
      - type: NestedTopology
        repeat: 2
        layers:
          - type: ResidualTopology
            layers:
              - {type: RMSNormLayer, d_model: 64, eps: 1e-5}
              - type: AttentionLayer
                d_model: 64
                n_heads: 4
                n_kv_heads: 2
                rope_base: 10000.0
                bias: false
          - type: ResidualTopology
            layers:
              - {type: RMSNormLayer, d_model: 64}
              - {type: SwiGLULayer, d_model: 64, d_ff: 128, bias: false}
      - {type: RMSNormLayer, d_model: 64}
      - {type: LinearLayer, d_in: 64, d_out: 256, bias: false}
groups:
  - name: g
    description: "a group"
    data: "data.npy"
    runs:
      - id: r1
        mode: train
        steps: 10
        train: {phase: standard, batch_size: 2, block_size: 32, lr: 0.001}
'''
def sub(old, new, count=1):
    assert old in BASE, old
    return BASE.replace(old, new, count)
files = {}
def add(name, text): files[name] = text
add('syntax_unclosed_flow.yml', sub('{type: RMSNormLayer, d_model: 64}\n      - {type: LinearLayer', '{type: RMSNormLayer, d_model: 64\n      - {type: LinearLayer'))
add('syntax_bad_indent.yml', sub('    type: StackedTopology\n    layers:', '    type: StackedTopology\n   layers:'))
add('tab_indent.yml', sub('                n_heads: 4\n', '\t\t\t\tn_heads: 4\n'))
add('unknown_top_key.yml', sub('groups:\n', 'group:\n'))
add('unknown_layer_key.yml', sub('                n_heads: 4\n', '                n_q_heads: 4\n'))
add('head_dim_key.yml', sub('                rope_base: 10000.0\n', '                head_dim: 16\n'))
add('wrong_type_quoted_int.yml', sub('d_ff: 128', 'd_ff: "128"'))
add('wrong_type_float_for_int.yml', sub('                n_heads: 4\n', '                n_heads: 4.0\n'))
add('wrong_type_bool_yes.yml', sub('                bias: false\n', '                bias: no\n'))
add('wrong_type_layers_mapping.yml', sub('          - type: ResidualTopology\n            layers:\n              - {type: RMSNormLayer, d_model: 64, eps: 1e-5}', '          - type: ResidualTopology\n            layers:\n              norm: {type: RMSNormLayer, d_model: 64, eps: 1e-5}\n              extra: 1\n          - type: ResidualTopology\n            layers:\n              - {type: RMSNormLayer, d_model: 64, eps: 1e-5}'))
add('wrong_type_string_name.yml', sub('name: bad', 'name: [bad]'))
add('bad_enum_mode.yml', sub('                bias: false\n', '                bias: false\n                mode: DECOUPLED\n'))
add('bad_enum_phase.yml', sub('phase: standard', 'phase: finetune'))
add('bad_enum_cache_kind.yml', BASE + '    benchmarks:\n      - id: mem\n        config: {type: memory, quantization_modes: [fp16, q8, q4]}\n')
add('bad_enum_model_type.yml', sub('  type: TransformerModel', '  type: Transformer'))
add('var_cycle.yml', sub('vars:\n  d: 64\n', 'vars:\n  d: 64\n  a: ${b}\n  b: ${c}\n  c: ${a}\n').replace('name: bad', 'name: ${a}'))
add('var_self_cycle.yml', sub('vars:\n  d: 64\n', 'vars:\n  d: "${d}"\n').replace('d_ff: 128', 'd_ff: "${d}"'))
add('var_unknown.yml', sub('d_ff: 128', 'd_ff: "${dff}"'))
add('vars_not_mapping.yml', sub('vars:\n  d: 64\n', 'vars: [d, 64]\n'))
add('var_bad_name.yml', sub('vars:\n  d: 64\n', 'vars:\n  d: 64\n  d-ff: 128\n'))
add('var_embedded_wrong_type.yml', sub('d_ff: 128', 'd_ff: "${d}0"'))
big = 'vars:\n  v0: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n' + ''.join('  v%d: "${v%d}${v%d}${v%d}${v%d}"\n' % (k, k-1, k-1, k-1, k-1) for k in range(1, 12))
add('var_string_bomb.yml', sub('vars:\n  d: 64\n', big).replace('name: bad', 'name: "${v11}"'))
add('dim_mismatch_linear.yml', sub('{type: LinearLayer, d_in: 64, d_out: 256', '{type: LinearLayer, d_in: 32, d_out: 256'))
add('dim_mismatch_norm.yml', sub('{type: RMSNormLayer, d_model: 64}\n      - {type: LinearLayer', '{type: RMSNormLayer, d_model: 128}\n      - {type: LinearLayer'))
add('dim_mismatch_residual.yml', sub('{type: SwiGLULayer, d_model: 64, d_ff: 128, bias: false}', '{type: LinearLayer, d_in: 64, d_out: 128}'))
add('dim_mismatch_embedder.yml', sub('embedder: {type: token, vocab_size: 256, d_model: 64}', 'embedder: {type: token, vocab_size: 256, d_model: 96}'))
add('tied_with_head.yml', sub('  tied_embeddings: false\n', ''))
add('untied_no_head.yml', sub('      - {type: LinearLayer, d_in: 64, d_out: 256, bias: false}\n', ''))
add('heads_not_divisible.yml', sub('n_kv_heads: 2', 'n_kv_heads: 3'))
add('kv_heads_exceed.yml', sub('n_kv_heads: 2', 'n_kv_heads: 8'))
add('odd_head_dim_rope.yml', sub('                n_heads: 4\n', '                n_heads: 4\n                attn_dim: 36\n'))
add('decoupled_missing_geo.yml', sub('                bias: false\n', '                bias: false\n                mode: decoupled\n                sem_dim: 32\n'))
add('decoupled_sem_not_divisible.yml', sub('                bias: false\n', '                bias: false\n                mode: decoupled\n                sem_dim: 30\n                geo_dim: 32\n'))
add('sem_dim_in_standard.yml', sub('                bias: false\n', '                bias: false\n                sem_dim: 32\n'))
add('absurd_dim.yml', sub('d_ff: 128', 'd_ff: 100000000'))
add('absurd_params.yml', sub('        repeat: 2\n', '        repeat: 5000\n').replace('d_ff: 128', 'd_ff: 16000000'))
add('repeat_bomb.yml', sub('        repeat: 2\n', '        repeat: 1000000000\n'))
add('int_overflow.yml', sub('steps: 10', 'steps: 123456789012345678901234567890'))
add('negative_eps.yml', sub('eps: 1e-5', 'eps: -1e-5'))
add('nan_lr.yml', sub('lr: 0.001', 'lr: .nan'))
add('inf_rope_base.yml', sub('rope_base: 10000.0', 'rope_base: .inf'))
add('dropout_probability.yml', sub('      - {type: RMSNormLayer, d_model: 64}\n      - {type: LinearLayer', '      - {type: DropoutLayer, p: 1.5}\n      - {type: RMSNormLayer, d_model: 64}\n      - {type: LinearLayer'))
add('zero_steps.yml', sub('steps: 10', 'steps: 0'))
add('unknown_type.yml', sub('type: SwiGLULayer', 'type: MoELayer'))
add('missing_type.yml', sub('{type: SwiGLULayer, d_model: 64', '{d_model: 64'))
add('topology_is_layer.yml', '''version: 1
model:
  type: TransformerModel
  topology: {type: RMSNormLayer, d_model: 64}
''')
add('empty_layers.yml', sub('          - type: ResidualTopology\n            layers:\n              - {type: RMSNormLayer, d_model: 64}\n              - {type: SwiGLULayer, d_model: 64, d_ff: 128, bias: false}\n', '          - type: ResidualTopology\n            layers: []\n'))
add('parallel_mismatch.yml', sub('{type: SwiGLULayer, d_model: 64, d_ff: 128, bias: false}', '{type: ParallelTopology, layers: [{type: LinearLayer, d_in: 64, d_out: 64}, {type: LinearLayer, d_in: 64, d_out: 32}]}'))
add('attention_after_parallel.yml', sub('          - type: ResidualTopology\n            layers:\n              - {type: RMSNormLayer, d_model: 64, eps: 1e-5}', '          - {type: ParallelTopology, layers: [{type: DropoutLayer}, {type: DropoutLayer}]}\n          - type: ResidualTopology\n            layers:\n              - {type: RMSNormLayer, d_model: 64, eps: 1e-5}'))
add('missing_model.yml', 'version: 1\nname: nomodel\ngroups: []\n')
add('missing_required_n_heads.yml', sub('                n_heads: 4\n', ''))
add('version_2.yml', sub('version: 1', 'version: 2'))
add('not_a_mapping.yml', '- version: 1\n- model: {}\n')
add('only_comments.yml', '# nothing but comments\n# still nothing\n')
add('duplicate_key.yml', sub('                n_heads: 4\n', '                n_heads: 4\n                n_heads: 8\n'))
add('multiple_documents.yml', BASE + '---\nversion: 1\n')
add('undefined_alias.yml', sub('{type: RMSNormLayer, d_model: 64}\n      - {type: LinearLayer', '*final_norm\n      - {type: LinearLayer'))
add('recursive_alias.yml', sub('vars:\n  d: 64\n', 'vars:\n  d: &loop [64, *loop]\n'))
bomb = 'vars:\n  b0: &b0 [x, x, x, x, x, x, x, x, x, x]\n' + ''.join('  b%d: &b%d [%s]\n' % (k, k, ', '.join(['*b%d' % (k-1)]*10)) for k in range(1, 9))
add('alias_bomb.yml', sub('vars:\n  d: 64\n', bomb))
add('merge_key_scalar.yml', sub('              - {type: RMSNormLayer, d_model: 64}\n              - {type: SwiGLU', '              - {<<: 5, type: RMSNormLayer, d_model: 64}\n              - {type: SwiGLU'))
add('unsupported_tag.yml', sub('d_ff: 128', 'd_ff: !!binary aGVsbG8='))
add('tag_mismatch.yml', sub('d_ff: 128', 'd_ff: !!int twelve'))
add('complex_key.yml', sub('groups:\n', '? [a, b]\n: complex\ngroups:\n'))
add('deep_nesting.yml', sub('vars:\n  d: 64\n', 'vars:\n  d: 64\n  deep: ' + '[' * 300 + ']' * 300 + '\n'))
add('device_mps.yml', sub('lr: 0.001}', 'lr: 0.001, device: mps}'))
add('blockwise_no_teacher.yml', sub('phase: standard', 'phase: blockwise'))
add('train_mode_without_train.yml', sub('        train: {phase: standard, batch_size: 2, block_size: 32, lr: 0.001}\n', ''))
add('compare_no_metrics.yml', BASE.replace('        train: {phase: standard', '        verify: {type: compare, batches: 2, fail_fast: true}\n        train: {phase: standard'))
add('eval_answer_not_choice.yml', BASE.replace('        train: {phase: standard', '''        verify:
          type: eval
          tokenizer: {type: tiktoken, encoding: cl100k_base}
          max_new_tokens: 4
          cases:
            - {id: c1, prompt: "The capital of France is", kind: choice_logprob, choices: [" Paris", " Rome"], answer: " Lyon"}
          thresholds: {min_student_accuracy: 0.5, max_accuracy_drop: 0.1}
        train: {phase: standard'''))
add('duplicate_run_id.yml', BASE + '      - id: r1\n        mode: sample\n        steps: 5\n')
add('suite_missing_file.yml', BASE + '    benchmarks:\n      - id: riddles\n        config: {type: suite, path: no_such_suite.yml}\n')
add('rope_scaling_incomplete.yml', sub('                rope_base: 10000.0\n', '                rope_base: 500000.0\n                rope_scaling: {type: llama3, factor: 32.0, low_freq_factor: 1.0, high_freq_factor: 4.0}\n'))
add('benchmark_no_config.yml', BASE + '    benchmarks:\n      - id: riddles\n')
# JSON variants
JBASE = '''{
  "version": 1,
  "name": "badjson",
  "model": {
    "type": "TransformerModel",
    "topology": {
      "type": "StackedTopology",
      "layers": [
        {"type": "RMSNormLayer", "d_model": 64},
        {"type": "LinearLayer", "d_in": 64, "d_out": 32}
      ]
    }
  }
}
'''
def jsub(old, new):
    assert old in JBASE, old
    return JBASE.replace(old, new, 1)
add('json_trailing_comma.json', jsub('"d_out": 32}\n', '"d_out": 32},\n'))
add('json_duplicate_key.json', jsub('"d_model": 64}', '"d_model": 64, "d_model": 32}'))
add('json_wrong_type.json', jsub('"d_out": 32}', '"d_out": "32"}'))
add('json_float_for_int.json', jsub('"d_out": 32}', '"d_out": 32.0}'))
add('json_unknown_key.json', jsub('"d_out": 32}', '"d_out": 32, "bais": false}'))
add('json_not_object.json', '[1, 2, 3]\n')
add('json_unterminated.json', JBASE[:120])
add('json_deep.json', '{"version": 1, "x": ' + '[' * 500 + ']' * 500 + '}\n')
add('json_dim_mismatch.json', jsub('"d_in": 64', '"d_in": 65'))
add('json_empty.json', '')
add('empty.yml', '')
add('unsupported_suffix.txt', BASE)
add('no_suffix', BASE)
for name, text in files.items():
    with open(os.path.join(D, name), 'w') as f: f.write(text)
# binary files
rnd = random.Random(1234)
with open(os.path.join(D, 'binary_junk.yml'), 'wb') as f: f.write(bytes(rnd.randrange(256) for _ in range(512)))
with open(os.path.join(D, 'nul_byte.yml'), 'wb') as f: f.write(BASE.encode().replace(b'name: bad', b'name: b\x00ad'))
with open(os.path.join(D, 'invalid_utf8.json'), 'wb') as f: f.write(JBASE.encode().replace(b'badjson', b'bad\xc3\x28json'))
with open(os.path.join(D, 'invalid_utf8.yml'), 'wb') as f: f.write(BASE.encode().replace(b'a group', b'a \xff group'))
with open(os.path.join(D, 'utf16_bom.yml'), 'wb') as f: f.write(b'\xff\xfe' + 'version: 1\nmodel: x\n'.encode('utf-16-le'))
print(len(files) + 5, 'files')

# ---- expectations: a "# expect:" first line for YAML text files, NAME.expect sidecars otherwise
import subprocess
BIN = os.path.abspath(os.environ.get('CARAMBA_BIN', 'build/caramba'))
sidecar = {'empty.yml', 'binary_junk.yml', 'nul_byte.yml', 'invalid_utf8.yml', 'utf16_bom.yml'}
def first_error(name):
    r = subprocess.run(['timeout', '10', BIN, 'compile', name], cwd=D, capture_output=True)
    line = r.stderr.decode('utf-8', 'replace').splitlines()[0]
    assert r.returncode == 1 and line.startswith('error: '), (name, r.returncode, line)
    return line[len('error: '):]
for name in sorted(os.listdir(D)):
    if name.endswith('.expect'): continue
    text_yaml = name.endswith('.yml') and name not in sidecar
    if text_yaml:
        body = open(os.path.join(D, name)).read()
        with open(os.path.join(D, name), 'w') as f: f.write('# expect: ?\n' + body)
    msg = first_error(name)
    exp = msg[:150]
    if text_yaml:
        with open(os.path.join(D, name), 'w') as f: f.write('# expect: ' + exp + '\n' + body)
    else:
        with open(os.path.join(D, name + '.expect'), 'w') as f: f.write(exp + '\n')
