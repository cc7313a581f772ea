import { describe, expect, it } from 'vitest';
import { BUILTIN_ROLES, PERMISSIONS, ROLE_NAME, Roles, type Permission } from '../../src/core/roles.js';

function granted(roles: Roles, role: string): Permission[] {
  return PERMISSIONS.filter((p) => roles.allows(role, p));
}

describe('Roles: built-in grants', () => {
  const roles = new Roles();

  it('observer is read-only', () => {
    expect(granted(roles, 'observer')).toEqual(['self', 'read']);
  });

  it('worker can create and work tasks but not manage, plan or administer tokens', () => {
    expect(granted(roles, 'worker')).toEqual([
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
    ]);
    expect(roles.allows('worker', 'lock.manage')).toBe(false);
    expect(roles.allows('worker', 'approval.decide')).toBe(false);
    expect(roles.allows('worker', 'task.manage')).toBe(false);
    expect(roles.allows('worker', 'plan.write')).toBe(false);
    expect(roles.allows('worker', 'token.admin')).toBe(false);
  });

  it('lead has everything except the admin-only permissions (keys, audit, debug, deciding approvals)', () => {
    const adminOnly: string[] = ['token.admin', 'approval.decide', 'debug', 'audit.read'];
    for (const p of adminOnly) expect(roles.allows('lead', p as never)).toBe(false);
    expect(granted(roles, 'lead')).toEqual(PERMISSIONS.filter((p) => !adminOnly.includes(p)));
  });

  it('admin has every permission', () => {
    expect(granted(roles, 'admin')).toEqual([...PERMISSIONS]);
  });

  it('grants grow strictly: observer ⊂ worker ⊂ lead ⊂ admin', () => {
    const chain = ['observer', 'worker', 'lead', 'admin'];
    for (let i = 1; i < chain.length; i++) {
      const lower = granted(roles, chain[i - 1]!);
      const higher = granted(roles, chain[i]!);
      for (const p of lower) expect(higher).toContain(p);
      expect(higher.length).toBeGreaterThan(lower.length);
    }
  });

  it('every built-in role exists', () => {
    for (const r of BUILTIN_ROLES) expect(roles.has(r)).toBe(true);
    expect(roles.names()).toEqual(expect.arrayContaining([...BUILTIN_ROLES]));
  });
});

describe('Roles: deny by default', () => {
  const roles = new Roles();

  it.each(['superuser', 'Admin', 'ADMIN', 'admin ', '', '__proto__', 'constructor', 'toString', 'hasOwnProperty'])(
    'an unknown role %j is denied everything',
    (role) => {
      expect(granted(roles, role)).toEqual([]);
      expect(roles.has(role)).toBe(false);
    },
  );

  it('a permission outside the catalog is denied even to admin', () => {
    expect(roles.allows('admin', 'everything' as Permission)).toBe(false);
  });
});

describe('Roles: custom roles', () => {
  it('grants exactly the configured permissions', () => {
    const roles = new Roles({ pm: ['self', 'read', 'plan.write'], auditor: ['read'] });
    expect(granted(roles, 'pm')).toEqual(['self', 'read', 'plan.write']);
    expect(granted(roles, 'auditor')).toEqual(['read']);
    expect(roles.has('pm')).toBe(true);
    expect(roles.names()).toEqual(expect.arrayContaining(['admin', 'lead', 'worker', 'observer', 'pm', 'auditor']));
  });

  it('a custom role with no permissions exists but is denied everything', () => {
    const roles = new Roles({ guest: [] });
    expect(roles.has('guest')).toBe(true);
    expect(granted(roles, 'guest')).toEqual([]);
  });

  it('does not leak into other instances', () => {
    new Roles({ coo: ['self', 'read', 'task.manage'] });
    const fresh = new Roles();
    expect(fresh.has('coo')).toBe(false);
    expect(fresh.allows('coo', 'read')).toBe(false);
  });

  it('copies the grant list, so later changes to the input have no effect', () => {
    const perms: Permission[] = ['read'];
    const roles = new Roles({ exec: perms });
    perms.push('token.admin');
    expect(roles.allows('exec', 'token.admin')).toBe(false);
  });

  it.each([...BUILTIN_ROLES])('refuses to redefine the built-in role %s', (role) => {
    expect(() => new Roles({ [role]: ['self'] })).toThrow(new RegExp(`role "${role}" is built in`));
  });

  it('built-in grants stay intact after a refused redefinition', () => {
    expect(() => new Roles({ observer: [...PERMISSIONS] })).toThrow();
    expect(granted(new Roles(), 'observer')).toEqual(['self', 'read']);
  });
});

describe('ROLE_NAME', () => {
  it.each(['admin', 'pm', 'coo', 'team-lead', 'a1_b', 'a'.repeat(32)])('accepts %j', (name) => {
    expect(ROLE_NAME.test(name)).toBe(true);
  });

  it.each(['', 'Admin', '1pm', '-x', '_x', 'a b', 'a'.repeat(33), 'pm\n', 'ü'])('refuses %j', (name) => {
    expect(ROLE_NAME.test(name)).toBe(false);
  });
});
