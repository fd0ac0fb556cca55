import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LruCache } from '../../src-main/block/cache';

test('LruCache never holds more than its capacity and evicts the least recently used first', () => {
  const evicted: Array<[number, string]> = [];
  const c = new LruCache<number, string>(3, (k, v) => evicted.push([k, v]));
  c.set(1, 'a');
  c.set(2, 'b');
  c.set(3, 'c');
  assert.equal(c.size, 3);
  assert.equal(c.get(1), 'a'); // 1 is now the most recent; 2 is the oldest
  c.set(4, 'd');
  assert.deepEqual(evicted, [[2, 'b']]);
  assert.equal(c.has(2), false);
  assert.equal(c.size, 3);
  c.set(3, 'c2'); // re-setting refreshes 3; the oldest is now 1
  c.set(5, 'e');
  assert.deepEqual(evicted, [[2, 'b'], [1, 'a']]);
  assert.deepEqual([...c.values()], ['d', 'c2', 'e']);
});

test('LruCache: has() does not refresh, get() of a missing key is undefined, delete and clear do not call onEvict', () => {
  const evicted: number[] = [];
  const c = new LruCache<number, number>(2, (k) => evicted.push(k));
  c.set(1, 10);
  c.set(2, 20);
  assert.equal(c.has(1), true); // not a use
  c.set(3, 30);
  assert.deepEqual(evicted, [1]);
  assert.equal(c.get(99), undefined);
  c.delete(2);
  c.clear();
  assert.equal(c.size, 0);
  assert.deepEqual(evicted, [1]);
});

test('LruCache stays bounded over many insertions, evicting in insertion order when nothing is reused', () => {
  const order: number[] = [];
  const c = new LruCache<number, number>(16, (k) => order.push(k));
  for (let i = 0; i < 10000; i++) {
    c.set(i, i);
    assert.ok(c.size <= 16);
  }
  assert.equal(order.length, 10000 - 16);
  assert.deepEqual(order.slice(0, 5), [0, 1, 2, 3, 4]);
  assert.equal(c.get(9999), 9999);
  assert.equal(c.get(9983), undefined);
});

test('LruCache capacity 1 and refusal of capacity 0', () => {
  const c = new LruCache<string, number>(1);
  c.set('a', 1);
  c.set('b', 2);
  assert.equal(c.get('a'), undefined);
  assert.equal(c.get('b'), 2);
  assert.throws(() => new LruCache(0));
});
