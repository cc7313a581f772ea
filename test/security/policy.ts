/**
 * The authorization policy, written down independently of src/core/roles.ts: for every op of the
 * catalog, which built-in roles may call it. test/security/catalog-walk.test.ts checks the code
 * against this table through the real surfaces; an op missing here fails that test, so adding an
 * op without deciding who may call it breaks the build.
 */
export type Role = 'admin' | 'lead' | 'worker' | 'observer';
export const ROLES: readonly Role[] = ['admin', 'lead', 'worker', 'observer'];

const ALL: readonly Role[] = ROLES;
const WORKERS: readonly Role[] = ['admin', 'lead', 'worker'];
const LEADS: readonly Role[] = ['admin', 'lead'];
const ADMINS: readonly Role[] = ['admin'];

export const POLICY: Readonly<Record<string, readonly Role[]>> = {
  whoami: ALL,
  prime: ALL,
  agent_list: ALL,
  plan_get: ALL,
  plan_update: LEADS,
  server_status: ADMINS,
  task_create: WORKERS,
  task_list: ALL,
  task_get: ALL,
  task_claim: WORKERS,
  task_start: WORKERS,
  task_heartbeat: WORKERS,
  task_complete: WORKERS,
  task_fail: WORKERS,
  task_release: WORKERS,
  task_cancel: LEADS,
  task_update: LEADS,
  message_send: WORKERS,
  message_inbox: ALL,
  message_ack: ALL,
  message_search: ALL,
  memory_set: WORKERS,
  memory_get: ALL,
  memory_list: ALL,
  memory_delete: WORKERS,
  discovery_add: WORKERS,
  discovery_search: ALL,
  session_start: WORKERS,
  session_checkpoint: WORKERS,
  session_end: WORKERS,
  handoff_accept: WORKERS,
  handoff_list: ALL,
  lock_acquire: WORKERS,
  lock_release: WORKERS,
  lock_list: ALL,
  lock_force_release: LEADS,
  decision_record: WORKERS,
  decision_list: ALL,
  approval_request: WORKERS,
  approval_get: ALL,
  approval_decide: ADMINS,
  approval_list: ADMINS,
  events_wait: ALL,
  token_create: ADMINS,
  token_list: ADMINS,
  token_revoke: ADMINS,
  audit_query: ADMINS,
  audit_verify: ADMINS,
};
