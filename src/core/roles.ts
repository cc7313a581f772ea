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
] as const;

export type Permission = (typeof PERMISSIONS)[number];

export const BUILTIN_ROLES = ['admin', 'lead', 'worker', 'observer'] as const;
export type BuiltinRole = (typeof BUILTIN_ROLES)[number];

const BUILTIN_GRANTS: Record<BuiltinRole, readonly Permission[]> = {
  admin: PERMISSIONS,
  lead: [
    'self',
    'read',
    'task.create',
    'task.work',
    'task.manage',
    'plan.write',
    'message.send',
    'memory.write',
    'discovery.write',
    'decision.write',
    'approval.request',
    'lock.write',
    'lock.manage',
    'session.write',
  ],
  worker: [
    'self',
    'read',
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
  observer: ['self', 'read'],
};

export const ROLE_NAME = /^[a-z][a-z0-9_-]{0,31}$/;

export class Roles {
  private readonly grants = new Map<string, ReadonlySet<Permission>>();

  constructor(custom: Record<string, readonly Permission[]> = {}) {
    for (const role of BUILTIN_ROLES) this.grants.set(role, new Set(BUILTIN_GRANTS[role]));
    for (const [role, perms] of Object.entries(custom)) {
      if (this.grants.has(role)) throw new Error(`role "${role}" is built in and cannot be redefined`);
      this.grants.set(role, new Set(perms));
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
