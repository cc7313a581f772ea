import { describe, expect, it } from 'vitest';
import { WaitCancels } from '../../src/api/http/cancels.js';
import { ClientSignal } from '../../src/api/http/inflight.js';

const call = (id: number | string, wait = 30_000) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'task_claim', arguments: { wait_ms: wait } } });
const cancel = (requestId: number | string) => ({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId } });

describe('WaitCancels (MCP cancellation over stateless HTTP)', () => {
  it('ends the waiting call of the same credential and id; nothing else', () => {
    const c = new WaitCancels();
    const mine = new ClientSignal();
    const other = new ClientSignal();
    const unlist = c.register({ token: 'key-a' }, call(1), mine)!;
    c.register({ token: 'key-b' }, call(1), other);
    expect(c.register({ token: 'key-a' }, call(2, 0), new ClientSignal())).toBeNull(); // no wait: not listed
    expect(c.cancel({ token: 'key-a' }, cancel('1'))).toBe(0); // "1" is not 1
    expect(c.cancel({ token: 'key-a' }, [cancel(1)])).toBe(1);
    expect(mine.aborted).toBe(true);
    expect(other.aborted).toBe(false);
    unlist();
  });

  it('a cancel read before its call is listed still ends it (kept a few seconds)', () => {
    const c = new WaitCancels();
    expect(c.cancel({ token: 'key-a' }, cancel(9))).toBe(0);
    const late = new ClientSignal();
    c.register({ token: 'key-a' }, call(9), late);
    expect(late.aborted).toBe(true);
    // Used once: the next call with that id waits as usual.
    const next = new ClientSignal();
    c.register({ token: 'key-a' }, call(9), next);
    expect(next.aborted).toBe(false);
    // Another credential's early cancel does not reach it.
    c.cancel({ token: 'key-b' }, cancel(10));
    const mine = new ClientSignal();
    c.register({ token: 'key-a' }, call(10), mine);
    expect(mine.aborted).toBe(false);
  });
});
