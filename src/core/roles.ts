/**
 * Permissions and roles. Every op in the catalog names exactly one permission; a role is a set
 * of permissions. Deny by default: a role without the permission is refused, and a role that is
 * not defined has no permissions at all.
 */
export const PERMISSIONS = [
  'self', // whoami: any authenticated principal
  'read', // boards, plans, agents
  'task.create',
  'task.work', // claim, start, heartbeat, complete, fail, release the caller's own tasks
  'task.manage', // cancel, update, requeue anyone's tasks
  'plan.write',
  'message.send', // send messages (reading one's own inbox is 'self')
  'memory.write', // set and delete memory: the caller's own agent-scope keys and shared project-scope keys
  'discovery.write',
  'decision.write',
  'approval.request',
  'approval.decide', // humans: grant or deny approvals
  'lock.write', // acquire and release one's own file locks
  'lock.manage', // force-release anyone's locks
  'session.write', // start, checkpoint and end one's own sessions; accept handoffs
  'token.admin',
  'debug', // server diagnostics
] as const;

export type Permission = (typeof PERMISSIONS)[number];

/**
 * Tiers group permissions for custom roles (S8): `read` sees, `write` works, `admin` manages
 * keys, approvals and others' locks, `debug` diagnoses. A custom role lists tiers
 * (`tier:read`) and/or single permissions.
 */
export const TIERS: Readonly<Record<'read' | 'write' | 'admin' | 'debug', readonly Permission[]>> = {
  read: ['self', 'read'],
  write: [
    'task.create',
    'task.work',
    'message.send',
    'memory.write',
    'discovery.write',
    'decision.write',
    'approval.request',
    'lock.write',
    'session.write',
  ],
  admin: ['task.manage', 'plan.write', 'lock.manage', 'approval.decide', 'token.admin', 'audit.read'].filter(
    (p): p is Permission => (PERMISSIONS as readonly string[]).includes(p),
  ),
  debug: ['debug'],
};

/** Expands `tier:<name>` entries and checks every permission exists; throws naming the bad entry. */
export function expandGrants(entries: readonly string[]): Permission[] {
  const out = new Set<Permission>();
  for (const e of entries) {
    if (e.startsWith('tier:')) {
      const tier = TIERS[e.slice(5) as keyof typeof TIERS];
      if (tier === undefined) throw new Error(`unknown tier "${e.slice(5)}" (known: ${Object.keys(TIERS).join(', ')})`);
      for (const p of tier) out.add(p);
    } else if ((PERMISSIONS as readonly string[]).includes(e)) out.add(e as Permission);
    else throw new Error(`unknown permission "${e}" (known: ${PERMISSIONS.join(', ')}, or tier:<${Object.keys(TIERS).join('|')}>)`);
  }
  return [...out];
}

export const BUILTIN_ROLES = ['admin', 'lead', 'worker', 'observer'] as const;
export type BuiltinRole = (typeof BUILTIN_ROLES)[number];

/** The built-in roles in terms of the tiers: a lead is a worker who also manages tasks, the plan and locks. */
const BUILTIN_GRANTS: Record<BuiltinRole, readonly Permission[]> = {
  admin: PERMISSIONS,
  lead: [...TIERS.read, ...TIERS.write, 'task.manage', 'plan.write', 'lock.manage'],
  worker: [...TIERS.read, ...TIERS.write],
  observer: TIERS.read,
};

export const ROLE_NAME = /^[a-z][a-z0-9_-]{0,31}$/;

export class Roles {
  private readonly grants = new Map<string, ReadonlySet<Permission>>();

  /** `custom`: role name → permissions and/or `tier:<name>` entries (from config). */
  constructor(custom: Readonly<Record<string, readonly string[]>> = {}) {
    for (const role of BUILTIN_ROLES) this.grants.set(role, new Set(BUILTIN_GRANTS[role]));
    for (const [role, entries] of Object.entries(custom)) {
      if (this.grants.has(role)) throw new Error(`role "${role}" is built in and cannot be redefined`);
      if (!ROLE_NAME.test(role)) throw new Error(`role name "${role}" must match ${ROLE_NAME}`);
      this.grants.set(role, new Set(expandGrants(entries)));
    }
  }

  allows(role: string, permission: Permission): boolean {
    return this.grants.get(role)?.has(permission) ?? false;
  }

  has(role: string): boolean {
    return this.grants.has(role);
  }

  names(): string[] {
    return [...this.grants.keys()];
  }
}
