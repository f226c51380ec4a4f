/** The one config reader (src/io/config.ts): types, bounds, defaults, null, and what its errors say. */
import { ConfigError, ConfigReader, describeRule, rule, showValue } from '../src/io/config.js';

const FILE = '/models/x/config.json';
const reader = (raw: unknown): ConfigReader => ConfigReader.of(raw, 'SomeModel', FILE);
const err = (f: () => unknown): ConfigError => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
};

describe('ConfigReader', () => {
  test('a config that is not a JSON object is refused, naming the file and class', () => {
    for (const [raw, what] of [[null, 'null'], [[1, 2], 'an array'], [42, 'number'], ['x', 'string']] as const) {
      const e = err(() => reader(raw));
      expect(e.message).toBe(`${FILE} (SomeModel): the config is ${what}, expected a JSON object of settings`);
      expect(e.key).toBeNull();
    }
    expect(err(() => ConfigReader.of(null, 'SomeModel')).message).toMatch(/^SomeModel config: the config is null/);
  });

  test('present values are checked, absent ones take the default, missing required ones are named as missing', () => {
    const r = reader({ a: 3, b: true, s: 'x', n: 0.5 });
    expect(r.int('a', { min: 1, max: 4 })).toBe(3);
    expect(r.int('z', { default: 7, min: 1 })).toBe(7);
    expect(r.bool('b')).toBe(true);
    expect(r.string('s')).toBe('x');
    expect(r.number('n', { above: 0 })).toBe(0.5);
    const e = err(() => r.int('layers', { min: 1, max: 8 }));
    expect(e.message).toBe(`${FILE} (SomeModel): required key "layers" is missing (expected an integer in 1…8)`);
    expect([e.file, e.className, e.key]).toEqual([FILE, 'SomeModel', 'layers']);
  });

  test('wrong types and out-of-bounds values name the key and the value', () => {
    const r = reader({ a: 2.5, b: 'yes', c: 100, d: -1, e: 0, f: NaN, g: '7' });
    expect(err(() => r.int('a')).message).toBe(`${FILE} (SomeModel): a=2.5 is invalid: expected an integer`);
    expect(err(() => r.bool('b')).message).toMatch(/b="yes" is invalid: expected true or false$/);
    expect(err(() => r.int('c', { min: 1, max: 64 })).message).toMatch(/c=100 is invalid: expected an integer in 1…64$/);
    expect(err(() => r.int('d', { min: 0 })).message).toMatch(/d=-1 is invalid: expected an integer ≥ 0$/);
    expect(err(() => r.number('e', { above: 0 })).message).toMatch(/e=0 is invalid: expected a number > 0$/);
    expect(err(() => r.number('f')).message).toMatch(/f=NaN is invalid: expected a number$/); // Python's JSON has NaN
    expect(err(() => r.int('g')).message).toMatch(/g="7" is invalid: expected an integer$/);
  });

  test('null is a value: accepted only where the key is nullable', () => {
    const r = reader({ a: null });
    expect(r.int('a', { default: 3, nullable: true })).toBeNull();
    expect(err(() => r.int('a', { default: 3 })).message).toMatch(/a=null is invalid: expected an integer$/);
    expect(r.oneOf('a', [null, 'x'])).toBeNull();
    expect(err(() => r.oneOf('a', ['x'])).message).toMatch(/a=null is not supported \(supported: "x"\)$/);
  });

  test('oneOf names the supported values', () => {
    const r = reader({ kind: 'fourier' });
    expect(err(() => r.oneOf('kind', ['positional'], { default: 'positional' })).message)
      .toBe(`${FILE} (SomeModel): kind="fourier" is not supported (supported: "positional")`);
  });

  test('lists: length bounds, and a bad entry is named with its index', () => {
    const r = reader({ ch: [32, 64, 0], types: ['A', 'B', 'C'], short: [1], nested: [[1, 2], [3, 'x']] });
    expect(err(() => r.list('ch', rule.int(1, 4096))).message).toMatch(/ch=0 \(entry 2\) is invalid: expected an integer in 1…4096$/);
    expect(err(() => r.list('types', rule.oneOf(['A', 'B']))).message).toMatch(/types="C" \(entry 2\) is not supported \(supported: "A", "B"\)$/);
    expect(err(() => r.list('short', rule.int(), { minLength: 2, maxLength: 2 })).message)
      .toMatch(/short=\[1\] is invalid: expected a list of 2 entries, each an integer$/);
    expect(err(() => r.list('nested', rule.list(rule.int(1)))).message).toMatch(/nested="x" \(entry 1\.1\) is invalid: expected an integer ≥ 1$/);
    expect(r.list('absent', rule.int(), { default: [1, 2] })).toEqual([1, 2]);
  });

  test('perBlock: one value for every block, or exactly one per block', () => {
    const r = reader({ one: 2, each: [1, 2, 3], wrong: [1, 2], layers: [1, [2, 3], 4] });
    expect(r.perBlock('one', rule.int(1), 3)).toEqual([2, 2, 2]);
    expect(r.perBlock('each', rule.int(1), 3)).toEqual([1, 2, 3]);
    expect(err(() => r.perBlock('wrong', rule.int(1), 3)).message).toMatch(/wrong=\[1,2\] is invalid: expected a list of 3 entries, each an integer ≥ 1$/);
    // A list is the per-block form even when an entry may itself be a list.
    expect(r.perBlock('layers', rule.either(rule.int(1), rule.list(rule.int(1))), 3)).toEqual([1, [2, 3], 4]);
    expect(r.perBlock('absent', rule.bool(), 2, { default: false })).toEqual([false, false]);
  });

  test('a default that does not fit the rest of the config says so and names the key to set', () => {
    const r = reader({});
    expect(err(() => r.list('block_out_channels', rule.int(1), { default: [320, 640, 1280, 1280], minLength: 2, maxLength: 2 })).message)
      .toBe(`${FILE} (SomeModel): block_out_channels is not set, and its default [320,640,1280,1280] does not fit the rest of the config `
        + '(expected a list of 2 entries, each an integer ≥ 1): set block_out_channels');
  });

  test('fail() is for checks across keys, in the same format', () => {
    const r = reader({ heads: 3 });
    const e = r.fail('heads', 'does not divide hidden_size=8');
    expect(e.message).toBe(`${FILE} (SomeModel): heads=3 does not divide hidden_size=8`);
    expect(e.key).toBe('heads');
  });

  test('an offending value is shown in at most ~200 characters, however large', () => {
    const huge = { s: 'y'.repeat(1e6), a: Array.from({ length: 1e5 }, (_, i) => i), o: Object.fromEntries(Array.from({ length: 1e4 }, (_, i) => [`k${i}`, i])) };
    const r = reader(huge);
    for (const key of ['s', 'a', 'o']) {
      const m = err(() => r.int(key)).message;
      expect(m.length).toBeLessThan(FILE.length + 300);
      expect(m).toContain('…');
    }
    expect(showValue('z'.repeat(1000)).length).toBeLessThanOrEqual(201);
    expect(showValue([1, [2, 'a']])).toBe('[1,[2,"a"]]');
  });

  test('rules describe themselves', () => {
    expect(describeRule(rule.either(rule.int(1, 8), rule.list(rule.int(1, 8), 4, 4))))
      .toBe('an integer in 1…8 or a list of 4 entries, each an integer in 1…8');
  });
});
