/**
 * Who may see an event (or any record shared through the events spine). Stored as one string:
 * `project` (everyone in the project), `agent:<agent id>`, `role:<role>`, `admin` (admins only).
 * A read path filters with `audiencesOf(principal)`; nothing is visible by default beyond it.
 */
export type Audience =
  | { kind: 'project' }
  | { kind: 'agent'; agentId: string }
  | { kind: 'role'; role: string }
  | { kind: 'admin' };

export const PROJECT: Audience = { kind: 'project' };

export function audienceKey(a: Audience): string {
  switch (a.kind) {
    case 'project':
      return 'project';
    case 'agent':
      return `agent:${a.agentId}`;
    case 'role':
      return `role:${a.role}`;
    case 'admin':
      return 'admin';
  }
}

/** Every audience key this principal belongs to. */
export function audiencesOf(p: { agentId: string; role: string }): string[] {
  const keys = ['project', `agent:${p.agentId}`, `role:${p.role}`];
  if (p.role === 'admin') keys.push('admin');
  return keys;
}
