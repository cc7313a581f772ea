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
  'token.admin',
] as const;

export type Permission = (typeof PERMISSIONS)[number];

export const BUILTIN_ROLES = ['admin', 'lead', 'worker', 'observer'] as const;
export type BuiltinRole = (typeof BUILTIN_ROLES)[number];

const BUILTIN_GRANTS: Record<BuiltinRole, readonly Permission[]> = {
  admin: PERMISSIONS,
  lead: ['self', 'read', 'task.create', 'task.work', 'task.manage', 'plan.write'],
  worker: ['self', 'read', 'task.create', 'task.work'],
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
