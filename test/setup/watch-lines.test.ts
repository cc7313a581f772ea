import { describe, expect, it } from 'vitest';
import { concerns, describeEvent, type WatchEvent } from '../../src/cli/watch.js';

/** The lines `baton watch` prints: one per event, inert in a terminal, and only what concerns the agent. */
const at = '2026-11-29T12:00:00.000Z';
const ev = (type: string, data: Record<string, unknown> | null, extra: Partial<WatchEvent> = {}): WatchEvent => ({
  id: 'c1',
  type,
  subject: 'x_1',
  actor: 'bob',
  data,
  at,
  ...extra,
});

describe('baton watch lines', () => {
  it('says what happened and what to do, one line each', () => {
    expect(describeEvent(ev('message.received', { from: 'bob', importance: 'urgent' }))).toBe(`${at} mail from bob (urgent): x_1 — read it with message_inbox`);
    expect(describeEvent(ev('task.ready', {}))).toBe(`${at} task ready: x_1 — task_claim it`);
    expect(describeEvent(ev('approval.decided', { status: 'approved', task_id: 't_1' }))).toBe(`${at} approval x_1 approved (task t_1) by bob`);
    expect(describeEvent(ev('lock.released', { paths: ['src/**', 'a.ts'], agent: 'bob', reason: 'expired' }))).toBe(
      `${at} lock released: src/**, a.ts (held by bob, expired)`,
    );
    expect(describeEvent(ev('handoff.created', { from: 'bob', tasks: 2 }))).toBe(`${at} handoff offered by bob: x_1 (2 tasks) — handoff_accept it`);
  });

  it('escapes control and bidi characters from stored names and paths, and never breaks the line', () => {
    const line = describeEvent(ev('lock.released', { paths: ['a\u001b]52;c;AAAA\u0007.ts', 'b\nc', 'x\u202ey'], agent: 'e\u001b[2Jvil' }));
    expect(line.split('\n')).toHaveLength(1);
    // eslint-disable-next-line no-control-regex
    expect(line).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e]/);
    expect(line).toContain('\\x1b');
  });

  it('keeps only lease events about the agent, and tasks created straight into ready', () => {
    expect(concerns(ev('task.lease_expired', { owner: 'me', status: 'ready' }), 'me')).toBe(true);
    expect(concerns(ev('task.lease_expired', { owner: 'other', status: 'ready' }), 'me')).toBe(false);
    expect(concerns(ev('task.lease_transferred', { from: 'other', to: 'me' }), 'me')).toBe(true);
    expect(concerns(ev('task.lease_transferred', { from: 'a', to: 'b' }), 'me')).toBe(false);
    expect(concerns(ev('task.created', { status: 'ready' }), 'me')).toBe(true);
    expect(concerns(ev('task.created', { status: 'blocked' }), 'me')).toBe(false);
    expect(concerns(ev('message.received', {}), 'me')).toBe(true);
  });
});
