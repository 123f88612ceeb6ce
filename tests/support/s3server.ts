/**
 * A real S3-compatible server for tests: s3rver (objects on disk, real S3 REST API with SigV4 checks),
 * on 127.0.0.1 only, on a random port, storing into a fresh temp dir. `created` lists the keys in the
 * order the server finished creating them (its ObjectCreated events), which is the ground truth for
 * upload-order assertions; `events` says how (`ObjectCreated:Put` for a single PUT,
 * `ObjectCreated:Post` for a completed multipart upload).
 */
import { promises as fs } from 'node:fs';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** s3rver's fixed account (it checks request signatures against it). */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

interface S3rverEvent {
  Records: { eventName: string; s3: { bucket: { name: string }; object: { key: string } } }[];
}

interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  on(event: 'event', listener: (e: S3rverEvent) => void): void;
}

type S3rverClass = new (opts: Record<string, unknown>) => S3rverInstance;

const require = createRequire(import.meta.url);

export interface S3TestServer {
  endpoint: string;
  port: number;
  dir: string;
  /** `bucket/key` of every object created (PUT, multipart completion, copy), in order. */
  created: string[];
  events: { name: string; key: string }[];
  close(): Promise<void>;
}

export async function startS3Server(buckets: string[]): Promise<S3TestServer> {
  const S3rver = require('s3rver') as S3rverClass;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'hpcbot-s3-'));
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: dir,
    configureBuckets: buckets.map((name) => ({ name })),
  });
  const created: string[] = [];
  const events: { name: string; key: string }[] = [];
  server.on('event', (e) => {
    for (const r of e.Records) {
      const key = `${r.s3.bucket.name}/${r.s3.object.key}`;
      events.push({ name: r.eventName, key });
      if (r.eventName.startsWith('ObjectCreated')) created.push(key);
    }
  });
  const addr = await server.run();
  return {
    endpoint: `http://127.0.0.1:${addr.port}`,
    port: addr.port,
    dir,
    created,
    events,
    close: async () => {
      await server.close();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}
