import { test } from 'node:test';
import assert from 'node:assert/strict';
import { API_METHODS, type ApiCaller, type JobEvent } from '../../src-shared/api';
import { clientOn } from '../../src-renderer/api/client';

test("the renderer's client has every contract method, each passing its name and arguments to the one call", async () => {
  const calls: Array<[string, unknown[]]> = [];
  const call = (async (method: string, args: unknown[]) => {
    calls.push([method, args]);
    return `answer of ${method}`;
  }) as unknown as ApiCaller;
  const listeners: Array<(e: JobEvent) => void> = [];
  const api = clientOn(call, (l) => {
    listeners.push(l);
    return () => undefined;
  });
  for (const method of API_METHODS) {
    const fn = api[method] as (...args: unknown[]) => Promise<unknown>;
    assert.equal(typeof fn, 'function', method);
    assert.equal(await fn('a', 2, null), `answer of ${method}`, method);
    assert.deepEqual(calls.pop(), [method, ['a', 2, null]], method);
  }
  // Trailing arguments left out stay left out (JSON has no undefined to carry them).
  await api.inspect('/x.img');
  assert.deepEqual(calls.pop(), ['inspect', ['/x.img']]);
  const seen: JobEvent[] = [];
  api.onJobEvent((e) => seen.push(e));
  listeners[0]({ id: 'j', type: 'progress', progress: { done: 1, total: 2, phase: 'convert' } });
  assert.equal(seen.length, 1);
});
