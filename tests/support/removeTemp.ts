// The other half of tests/support/isolateTemp.ts: remove the test file's temporary root. A process that a
// test has not stopped yet may still write into it; what it leaves is not worth failing the file for.
import { rmSync } from 'node:fs';

afterAll(() => {
  const root = process.env.HPCBOT_TEST_TMP_ROOT;
  if (!root) return;
  try {
    rmSync(root, { recursive: true, force: true, maxRetries: 3 });
  } catch {
    // left for the machine's own /tmp cleaning
  }
});
