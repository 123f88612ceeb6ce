/** What the uploader tests deploy: a finished build job's state (for provenance and paths). */
import type { JobData } from '../../src/store/job.js';

export const DEPLOY_JOB: JobData = {
  pr: { owner: 'EESSI', repo: 'software-layer', number: 42, installation_id: null },
  instance: 'test-bot',
  target: {
    nodeType: 'zen4',
    repoId: 'eessi.io-2023.06-software',
    os: 'linux',
    onArch: 'x86_64/amd/zen4',
    forArch: 'x86_64/amd/zen4',
    slurmParams: [],
  },
  exportVariables: [],
  head_sha: 'a'.repeat(40),
  base_sha: 'b'.repeat(40),
  merge_sha: 'c'.repeat(40),
  backend: 'local',
  submit_id: 'sub-1',
  job_id: '1234',
  rows: [],
};
