/**
 * `baton doctor`'s free-space line from statfs numbers (no full disk needed; the real one is in
 * test/faults/datadir-cli.test.ts, as root on a small tmpfs): FAIL where the hub answers
 * storage_full, a note (advisory) when nearly full, ok otherwise.
 */
import { describe, expect, it } from 'vitest';
import { DISK_WARN_BYTES, DISK_WARN_FRACTION, diskSpaceCheck } from '../../src/cli/doctor.js';
import { NEARLY_FULL_BYTES } from '../../src/store/faults.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** statfs numbers for `free` bytes available of `total`, in 4 KiB blocks. */
const fs = (free: number, total: number): { bavail: number; blocks: number; bsize: number } => ({ bavail: free / 4096, blocks: total / 4096, bsize: 4096 });

describe('doctor: disk space', () => {
  it('FAILs below the threshold at which the hub answers storage_full (1 MiB), and says what to do', () => {
    expect(NEARLY_FULL_BYTES).toBe(MiB);
    for (const free of [0, 4096, MiB - 4096]) {
      const c = diskSpaceCheck('/d', fs(free, 4 * MiB));
      expect(c).toMatchObject({ name: 'disk space', ok: false });
      expect(c.advisory).toBeUndefined();
      expect(c.detail).toContain('on the file system of /d');
      expect(c.detail).toContain('the hub refuses writes (storage_full) below 1.0 MiB; free space there');
    }
    expect(diskSpaceCheck('/d', fs(0, 4 * MiB)).detail).toMatch(/^0\.0 MiB free of 4\.0 MiB \(0\.0 %\)/);
  });

  it('is a note (advisory, not a failure) below 64 MiB or below 5 % of the file system', () => {
    expect(DISK_WARN_BYTES).toBe(64 * MiB);
    expect(DISK_WARN_FRACTION).toBe(0.05);
    // At the hard threshold itself: no longer a FAIL.
    for (const [free, total] of [[MiB, 4 * MiB], [DISK_WARN_BYTES - 4096, 100 * GiB], [GiB, 100 * GiB]] as const) {
      const c = diskSpaceCheck('/d', fs(free, total));
      expect(c, `${free} of ${total}`).toMatchObject({ name: 'disk space', ok: true, advisory: true });
      expect(c.detail).toContain('nearly full');
    }
  });

  it('is ok with room to spare', () => {
    for (const [free, total] of [[DISK_WARN_BYTES, 1 * GiB], [10 * GiB, 100 * GiB]] as const) {
      const c = diskSpaceCheck('/d', fs(free, total));
      expect(c, `${free} of ${total}`).toEqual({ name: 'disk space', ok: true, detail: expect.stringMatching(/free of .* on the file system of \/d$/) });
    }
    expect(diskSpaceCheck('/d', fs(10 * GiB, 100 * GiB)).detail).toBe('10.0 GiB free of 100.0 GiB (10.0 %) on the file system of /d');
  });
});
