import { readFileSync } from 'node:fs';
import { systemClock, type Clock, type MachineTime } from '../core/clock.js';

let boot: string | null | undefined;

/**
 * This boot's id (Linux: /proc/sys/kernel/random/boot_id), read once; null elsewhere. Within one
 * boot, `process.hrtime` (CLOCK_MONOTONIC) is the same clock in every process; across a reboot
 * it starts again, so a reading is only compared with one of the same boot.
 */
function bootId(): string | null {
  if (boot === undefined) {
    try {
      boot = process.platform === 'linux' ? readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null : null;
    } catch {
      boot = null;
    }
  }
  return boot;
}

function machine(): MachineTime | null {
  const id = bootId();
  return id === null ? null : { boot: id, ms: Number(process.hrtime.bigint()) / 1e6 };
}

/** The system clock with the machine's shared monotonic reading: what a hub runs on. */
export const hostClock: Clock = { now: systemClock.now, monotonic: systemClock.monotonic, machine };
