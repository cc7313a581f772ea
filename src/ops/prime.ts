import { z } from 'zod';
import { iso } from '../core/time.js';
import { CONTROL_CHARS } from '../core/text.js';
import { agentById, getPlan } from '../store/directory.js';
import { liveLocks } from '../store/locks.js';
import { unreadCount } from '../store/messages.js';
import { decidedFor, readyFor, unreadOf } from '../store/prime.js';
import { listTasks } from '../store/tasks.js';
import { AAD, openNullable, openWith } from '../security/crypto.js';
import { defineOp, type OpContext, type OpDef } from './catalog.js';
import { resumeInfo } from './sessions.js';

/**
 * `prime`: the brief an agent reads when it starts, restarts or is compacted (Claude Code's
 * SessionStart and PreCompact hooks run `baton prime`): who it is, what it holds, what it may do
 * next, what waits for it, and the rules of working with Baton — as plain text, ready to be put
 * into a model's context.
 *
 * Bound: at most PRIME_MAX_BYTES (6,000) UTF-8 bytes. At the usual ~4 bytes per token that is
 * ~1,500 tokens; the bound is set at 3 bytes per token (2,000 tokens) because ids and paths
 * tokenize worse than prose. Every list is clipped to a few items with "+N more", each line to
 * LINE_MAX characters, and when the whole is still too long the lists shrink (5 → 3 → 1 → 0
 * items) before anything else; the rules and the header always stay.
 */
export const PRIME_MAX_BYTES = 6_000;
const LINE_MAX = 160;
const SHRINK = [5, 3, 1, 0] as const;
/** Approvals decided within this long are news worth a line. */
const DECIDED_WITHIN_MS = 24 * 3_600_000;

export const PRIME_RULES = [
  'Claim before you work: only work on a task you hold (task_claim), and task_heartbeat before its lease expires.',
  'Lock the files you will edit (lock_acquire with task_id); never edit files another agent holds.',
  'End every task you claim: task_complete with a result, task_fail with the error, or task_release.',
  'Read your mail (message_inbox) before starting and between tasks; answer urgent messages first.',
  'After a restart or a compaction, run prime again; record decisions and hand off before you stop.',
] as const;

const CONTROLS = new RegExp(`[${CONTROL_CHARS}]+`, 'g');

/** Agents' text in a one-line, terminal-safe form: controls, bidi overrides and line breaks become spaces. */
function clean(text: string, max = LINE_MAX): string {
  const flat = text.replace(CONTROLS, ' ').replace(/\s+/g, ' ').trim();
  return flat.length <= max ? flat : `${flat.slice(0, max - 1)}…`;
}

function minutesFrom(now: number, at: number): string {
  const m = Math.round((at - now) / 60_000);
  return m >= 0 ? `in ${m} min` : `${-m} min ago`;
}

interface Section {
  title: string;
  /** How many items exist (may exceed lines.length: "+N more"). */
  count: number;
  lines: string[];
  /** Shown when there is nothing. */
  none?: string;
  /** Added after "+N more". */
  hint?: string;
}

/** The brief with each list clipped to `keep` items; `elided`: some list shows fewer than it has. */
function render(head: string[], sections: readonly Section[], keep: number): { text: string; elided: boolean } {
  const out = [...head];
  let elided = false;
  for (const s of sections) {
    out.push('', `## ${s.title}${s.count > 0 ? ` (${s.count})` : ''}`);
    if (s.count === 0) {
      out.push(s.none ?? '- none');
      continue;
    }
    const shown = s.lines.slice(0, keep);
    for (const l of shown) out.push(`- ${l}`);
    const more = s.count - shown.length;
    if (more > 0) {
      elided = true;
      out.push(`- +${more} more${s.hint === undefined ? '' : ` (${s.hint})`}`);
    }
  }
  out.push('', '## Rules of working with Baton', ...PRIME_RULES.map((r, i) => `${i + 1}. ${r}`));
  return { text: out.join('\n') + '\n', elided };
}

/** The brief within PRIME_MAX_BYTES: lists shrink first; a last resort cut keeps the bound whatever the text. */
export function fitBrief(head: string[], sections: readonly Section[]): { text: string; truncated: boolean } {
  for (const keep of SHRINK) {
    const { text, elided } = render(head, sections, keep);
    if (Buffer.byteLength(text) <= PRIME_MAX_BYTES) return { text, truncated: elided };
  }
  const ELLIPSIS = '\n…\n'; // 5 bytes
  const buf = Buffer.from(render(head, sections, 0).text).subarray(0, PRIME_MAX_BYTES - Buffer.byteLength(ELLIPSIS));
  // Cut on a character boundary: a partial UTF-8 sequence at the end decodes to U+FFFD, dropped.
  return { text: `${buf.toString('utf8').replace(/\uFFFD+$/, '')}${ELLIPSIS}`, truncated: true };
}

async function build(ctx: OpContext): Promise<{ text: string; truncated: boolean }> {
  const p = ctx.principal;
  const c = ctx.services.cipher;
  const now = ctx.now;
  const max = SHRINK[0] + 1;
  const agent = await agentById(ctx.tx, p.agentId);
  const capabilities = agent === undefined ? [] : (JSON.parse(agent.capabilities) as string[]);

  const held = await listTasks(ctx.tx, { projectId: p.projectId, statuses: ['claimed', 'running'], leaseOwner: p.agentName, limit: 50 });
  // Ready work only for a role that may claim it (an observer's brief has no such section).
  const mayClaim = ctx.services.roles.allows(p.role, 'task.work');
  const ready = mayClaim ? await readyFor(ctx.tx, { projectId: p.projectId, agentName: p.agentName, role: p.role, capabilities, now }, max) : null;
  const urgent = await unreadOf(ctx.tx, { projectId: p.projectId, agentId: p.agentId, importance: ['urgent', 'high'] }, max);
  const unread = await unreadCount(ctx.tx, p.projectId, p.agentId);
  const locks = await liveLocks(ctx.tx, { projectId: p.projectId, now, agentName: p.agentName, limit: 100 });
  const resume = await resumeInfo(ctx.tx, p, c);
  const decided = await decidedFor(ctx.tx, { projectId: p.projectId, agentId: p.agentId, since: now - DECIDED_WITHIN_MS }, max);
  const plan = await getPlan(ctx.tx, p.projectId);
  const goal = plan === undefined ? '' : openWith(c, plan.goal, AAD.plan(plan.project_id, 'goal'));

  const title = (r: { project_id: string; id: string; title: string }): string => clean(openWith(c, r.title, AAD.task(r.project_id, r.id, 'title')), 100);
  const head = [
    `# Baton brief for ${clean(p.agentName, 64)} (role ${p.role}, project ${clean(p.projectName, 64)}) at ${iso(now).slice(0, 16)}Z`,
    `Goal: ${goal === '' ? '(no plan goal set)' : clean(goal, 400)}`,
  ];
  if (capabilities.length > 0) head.push(`Your capabilities: ${clean(capabilities.join(', '), 200)}`);
  head.push(`Unread mail: ${unread}${unread > 0 ? ' (message_inbox)' : ''}`);
  if (resume.session !== null) {
    const s = resume.session;
    const last = s.last_checkpoint === null ? '' : `; last checkpoint: ${clean(s.last_checkpoint.summary, 120)}`;
    head.push(`Open session ${s.id} since ${s.started_at}${s.goal === null ? '' : ` (goal: ${clean(s.goal, 100)})`}${last}`);
  }

  const sections: Section[] = [
    {
      title: 'Tasks you hold',
      count: held.length,
      none: '- none: task_claim takes the most urgent ready task you may take',
      lines: held.map(
        (t) =>
          `${t.id} [${t.status}, p${t.priority}] ${title(t)} — lease token ${t.lease_token}, expires ${t.lease_expires_at === null ? '?' : minutesFrom(now, t.lease_expires_at)}`,
      ),
    },
    {
      title: 'Handoffs offered to you',
      count: resume.pending_handoffs.count,
      hint: 'handoff_list',
      lines: resume.pending_handoffs.first.map((h) => `${h.id} from ${clean(h.from, 64)} (${h.tasks} tasks): ${clean(h.summary, 120)} — handoff_accept`),
    },
    {
      title: 'Locks you hold',
      count: locks.length,
      lines: locks.map(
        (l) => `${l.id} ${l.mode} ${clean(l.paths.join(' '), 100)}${l.taskId === null ? '' : ` (task ${l.taskId})`}, expires ${minutesFrom(now, l.expiresAt)}`,
      ),
    },
    {
      title: 'Urgent unread mail',
      count: urgent.count,
      hint: 'message_inbox',
      lines: urgent.rows.map((m) => {
        const subject = m.subject === '' ? '' : openWith(c, m.subject, AAD.message(m.project_id, m.id, 'subject'));
        const body = openWith(c, m.body, AAD.message(m.project_id, m.id, 'body'));
        return `${m.id} [${m.importance}] from ${clean(m.sender_name, 64)}${m.ack_required === 1 ? ' (ack required)' : ''}: ${clean(subject === '' ? body : `${subject} — ${body}`, 120)}`;
      }),
    },
    {
      title: 'Approvals decided for you (last 24 h)',
      count: decided.count,
      lines: decided.rows.map((a) => {
        const reason = openNullable(c, a.reason, AAD.approval(a.project_id, a.id, 'reason'));
        const action = clean(openWith(c, a.action, AAD.approval(a.project_id, a.id, 'action')), 80);
        return `${a.id} ${a.status.toUpperCase()}${a.decided_by === null ? '' : ` by ${clean(a.decided_by, 64)}`}: ${action}${reason === null ? '' : ` (${clean(reason, 60)})`}${a.task_id === null ? '' : ` [task ${a.task_id}]`}`;
      }),
    },
  ];
  if (ready !== null) {
    sections.push({
      title: 'Ready tasks you may claim',
      count: ready.count,
      hint: 'task_claim takes the most urgent',
      lines: ready.rows.map((t) => `${t.id} [p${t.priority}] ${title(t)}`),
    });
  }
  return fitBrief(head, sections);
}

export const prime = defineOp({
  name: 'prime',
  summary: 'Your brief: what you hold, ready work, urgent mail, handoffs, rules. Call first.',
  input: () => z.object({}).strict(),
  output: () => z.object({
    brief: z.string().describe('plain text, at most 6,000 bytes (≤ 2,000 tokens)'),
    truncated: z.boolean().describe('some lists show only their first items ("+N more")'),
  }),
  permission: 'self',
  kind: 'read',
  tier: 'core',
  rest: { method: 'GET', path: '/prime' },
  cli: { group: 'agent', command: 'prime' },
  async handler(ctx) {
    const { text, truncated } = await build(ctx);
    return { brief: text, truncated };
  },
});

export const PRIME_OPS: readonly OpDef[] = [prime];
