import { InvalidParameter } from '../../lib/index.js';
import { checkParameters } from '../../lib/sql/parameters.js';
import { syntaxOf } from '../../lib/drivers/registry.js';

const check = (values: unknown[]) => () => checkParameters(values, syntaxOf('postgres'));

describe('checkParameters', () => {
  it('accepts ordinary values', () => {
    expect(check([1, -2.5, 'text', null, true, new Date(), Buffer.from('x'), 2n ** 62n, { a: 1 }, [1, 2]])).not.toThrow();
  });

  it.each([
    [[2 ** 53 + 2], 1, /bigint or a string/],
    [['ok', undefined], 2, /undefined; pass null/],
    [[new Date('nope')], 1, /invalid Date/],
    [['a\0b'], 1, /NUL/],
    [[NaN], 1, /NaN/],
    [[Infinity], 1, /Infinity/],
    [[2n ** 64n], 1, /64-bit/],
    [[Symbol('s')], 1, /symbol/],
  ])('refuses %p at position %i', (values, position, message) => {
    try {
      checkParameters(values as unknown[], syntaxOf('postgres'));
      throw new Error('expected InvalidParameter');
    } catch (error) {
      expect(error).toBeInstanceOf(InvalidParameter);
      expect((error as InvalidParameter).position).toBe(position);
      expect((error as Error).message).toMatch(new RegExp(`parameter ${position}`));
      expect((error as Error).message).toMatch(message);
    }
  });

  it('refuses more parameters than the dialect allows', () => {
    expect(check(new Array(65536).fill(1))).toThrow(/65536 parameters exceed the 65535/);
  });
});
