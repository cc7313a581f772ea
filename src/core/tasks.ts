/**
 * The task domain, pure: states, which transitions are legal, lease and backoff math,
 * dependency-cycle detection. No I/O here; the store applies what this decides.
 */
export const TASK_STATES = ['blocked', 'ready', 'claimed', 'running', 'done', 'failed', 'cancelled'] as const;
export type TaskState = (typeof TASK_STATES)[number];

/** States in which an agent holds a lease on the task. */
export const HELD_STATES: readonly TaskState[] = ['claimed', 'running'];
/** States a task never leaves on its own (a lead may re-queue a failed one). */
export const FINAL_STATES: readonly TaskState[] = ['done', 'failed', 'cancelled'];

export function isHeld(state: TaskState): boolean {
  return state === 'claimed' || state === 'running';
}

export function isFinal(state: TaskState): boolean {
  return state === 'done' || state === 'failed' || state === 'cancelled';
}

export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
}

/** Exponential backoff after the n-th failed attempt (n >= 1): base, 2·base, 4·base, … capped. */
export function backoffDelay(attempt: number, policy: BackoffPolicy): number {
  const n = Math.max(1, Math.floor(attempt));
  const delay = policy.baseMs * 2 ** Math.min(n - 1, 30);
  return Math.min(delay, policy.maxMs);
}

export type FailOutcome = { state: 'ready'; availableAt: number } | { state: 'failed' };

/** After a failure (or an expired lease): retry later while attempts remain, else dead-letter. */
export function afterFailure(
  attempts: number,
  maxAttempts: number,
  now: number,
  policy: BackoffPolicy,
  retry = true,
): FailOutcome {
  if (!retry || attempts >= maxAttempts) return { state: 'failed' };
  return { state: 'ready', availableAt: now + backoffDelay(attempts, policy) };
}

/**
 * Finds a dependency cycle in a graph given as node → the nodes it depends on.
 * Returns the cycle as a path that starts and ends at the same node (a → b → a), or null.
 * Iterative DFS, so a deep chain cannot overflow the stack; linear in nodes + edges.
 */
export function findCycle(graph: ReadonlyMap<string, readonly string[]>): string[] | null {
  const WHITE = 0;
  const GREY = 1;
  const BLACK = 2;
  const color = new Map<string, number>();
  for (const start of graph.keys()) {
    if ((color.get(start) ?? WHITE) !== WHITE) continue;
    const stack: { node: string; next: number }[] = [{ node: start, next: 0 }];
    const path: string[] = [start];
    // Where each grey node sits on the path: the cycle is cut out without a search.
    const onPath = new Map<string, number>([[start, 0]]);
    color.set(start, GREY);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const deps = graph.get(top.node) ?? [];
      if (top.next < deps.length) {
        const dep = deps[top.next++]!;
        const c = color.get(dep) ?? WHITE;
        if (c === GREY) {
          const from = onPath.get(dep)!;
          return [...path.slice(from), dep];
        }
        if (c === WHITE && graph.has(dep)) {
          color.set(dep, GREY);
          stack.push({ node: dep, next: 0 });
          onPath.set(dep, path.length);
          path.push(dep);
        }
      } else {
        color.set(top.node, BLACK);
        stack.pop();
        onPath.delete(path.pop()!);
      }
    }
  }
  return null;
}

/**
 * Orders a batch so that every task comes after the in-batch tasks it depends on.
 * `deps[i]` lists indexes into the batch. Throws nothing: callers check cycles first. Linear in
 * tasks + edges (Kahn's algorithm).
 */
export function topoOrder(count: number, deps: readonly (readonly number[])[]): number[] {
  const indegree = new Array<number>(count).fill(0);
  const dependents: number[][] = Array.from({ length: count }, () => []);
  for (let i = 0; i < count; i++) {
    for (const d of deps[i] ?? []) {
      indegree[i]!++;
      dependents[d]!.push(i);
    }
  }
  const queue: number[] = [];
  for (let i = 0; i < count; i++) if (indegree[i] === 0) queue.push(i);
  const order: number[] = [];
  // A read index instead of shift(): shift moves the whole array each time (quadratic in a batch).
  for (let head = 0; head < queue.length; head++) {
    const i = queue[head]!;
    order.push(i);
    for (const j of dependents[i]!) if (--indegree[j]! === 0) queue.push(j);
  }
  return order;
}

/** Presence from the last time an agent was heard from. */
export function presence(lastSeenAt: number | null, now: number): 'online' | 'idle' | 'offline' {
  if (lastSeenAt === null) return 'offline';
  const age = now - lastSeenAt;
  if (age <= 60_000) return 'online';
  if (age <= 15 * 60_000) return 'idle';
  return 'offline';
}
