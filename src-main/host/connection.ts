/**
 * One browser window's WebSocket on the host, kept within bounds whatever the client does:
 *
 * - at most MAX_CALLS_IN_FLIGHT calls run at once for a socket; while that many run, the socket is not read
 *   (ws.pause()), so a client that sends faster than it is answered waits in its own kernel buffers, not in
 *   our memory;
 * - back-pressure on sends: while more than SEND_HIGH_WATER bytes of replies and events wait to be written,
 *   the socket is not read either, until they fall below SEND_LOW_WATER; progress events for a socket that
 *   does not read are dropped (the next one supersedes them; done/failed never are); a client that reads
 *   nothing at all while SEND_HARD_LIMIT bytes wait for it is disconnected;
 * - a socket may have MAX_JOBS_PER_SOCKET jobs running; when it closes, its jobs are cancelled as the app's
 *   Cancel does (temporaries removed, nothing half-written left) and the calls still queued for it are
 *   dropped. Calls already running finish on their own (a call is short: an inspect, a listing) and their
 *   answers go nowhere.
 */
import type { WebSocket, RawData } from 'ws';
import type { DiskErrorDto, DiskwrightApi, JobEvent, JobId, WireMessage } from '../../src-shared/api';
import { DiskError } from '../block/errors';
import type { JobManager } from '../services/jobs';
import { callApi, errorDto } from '../api';

/** Calls a window makes at once: a view asks for a few things together; nothing legitimate needs more. */
export const MAX_CALLS_IN_FLIGHT = 16;
/** Jobs one window runs at once: a person follows one or two. */
export const MAX_JOBS_PER_SOCKET = 16;
/** Bytes waiting to be written to a socket before it is no longer read. */
export const SEND_HIGH_WATER = 4 << 20;
export const SEND_LOW_WATER = 1 << 20;
/** Bytes waiting for a client that reads nothing: past this it is disconnected. */
export const SEND_HARD_LIMIT = 64 << 20;

interface Request {
  id: number;
  method: unknown;
  args: unknown;
}

export class HostConnection {
  private inFlight = 0;
  private unsent = 0;
  private paused = false;
  private closed = false;
  private readonly queue: Request[] = [];
  /** Jobs this socket started that have not ended. */
  private readonly ownJobs = new Set<JobId>();
  /** startJob calls under way (not yet answered with an id). */
  private starting = 0;
  /** The last jobs seen ending: one can end before its startJob call has answered (it failed at once). */
  private readonly recentEnds: JobId[] = [];
  private readonly unsubscribe: () => void;

  constructor(
    private readonly ws: WebSocket,
    private readonly api: DiskwrightApi,
    private readonly jobs: JobManager,
  ) {
    // One person, one machine: every window of this host sees every job's events.
    this.unsubscribe = jobs.onEvent((event) => this.onJobEvent(event));
    ws.on('message', (data: RawData, isBinary: boolean) => this.onMessage(data, isBinary));
    ws.on('close', () => this.onClose());
    ws.on('error', () => ws.terminate());
  }

  private onJobEvent(event: JobEvent): void {
    if (event.type === 'progress') {
      // A window that is behind gets the job's end, not every step on the way there.
      if (this.unsent > SEND_LOW_WATER) return;
    } else if (!this.ownJobs.delete(event.id)) {
      this.recentEnds.push(event.id);
      if (this.recentEnds.length > 64) this.recentEnds.shift();
    }
    this.send({ event });
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    if (this.closed) return;
    const msg = isBinary ? undefined : parseRequest(data.toString());
    if (!msg) {
      this.ws.close(1008, 'malformed request');
      return;
    }
    this.queue.push(msg);
    this.pump();
  }

  /** Starts queued calls while there is room, and reads the socket again only when there is. */
  private pump(): void {
    while (!this.closed && this.inFlight < MAX_CALLS_IN_FLIGHT && this.queue.length > 0) this.run(this.queue.shift()!);
    this.updateFlow();
  }

  private updateFlow(): void {
    if (this.closed) return;
    const full = this.inFlight >= MAX_CALLS_IN_FLIGHT || this.unsent > SEND_HIGH_WATER;
    const roomy = this.inFlight < MAX_CALLS_IN_FLIGHT && this.unsent <= SEND_LOW_WATER;
    if (full && !this.paused) {
      this.paused = true;
      this.ws.pause();
    } else if (this.paused && roomy) {
      this.paused = false;
      this.ws.resume();
    }
  }

  private run(req: Request): void {
    this.inFlight++;
    void this.call(req).then(
      (result) => this.send({ id: req.id, result: result === undefined ? null : result }),
      (err: unknown) => this.send({ id: req.id, error: errorDto(err) satisfies DiskErrorDto }),
    ).finally(() => {
      this.inFlight--;
      this.pump();
    });
  }

  private async call(req: Request): Promise<unknown> {
    if (req.method !== 'startJob') return callApi(this.api, req.method, req.args);
    // Starts still on their way count too: calls in flight run side by side.
    if (this.ownJobs.size + this.starting >= MAX_JOBS_PER_SOCKET) {
      throw new DiskError('EINVAL', `startJob: ${MAX_JOBS_PER_SOCKET} jobs are already running from this window; wait for one to end or cancel one`);
    }
    this.starting++;
    let id: unknown;
    try {
      id = await callApi(this.api, req.method, req.args);
    } finally {
      this.starting--;
    }
    if (typeof id === 'string') {
      // The socket may have closed while the job started: it has no owner to follow it then.
      if (this.closed) this.jobs.cancel(id);
      else if (!this.recentEnds.includes(id)) this.ownJobs.add(id);
    }
    return id;
  }

  private send(msg: WireMessage): void {
    if (this.closed || this.ws.readyState !== this.ws.OPEN) return;
    const text = JSON.stringify(msg);
    const bytes = Buffer.byteLength(text);
    if (this.unsent + bytes > SEND_HARD_LIMIT) {
      // It has read nothing for SEND_HARD_LIMIT bytes: it is not a window that anyone looks at.
      this.ws.terminate();
      return;
    }
    this.unsent += bytes;
    this.ws.send(text, () => {
      this.unsent -= bytes;
      this.updateFlow();
    });
    this.updateFlow();
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe();
    this.queue.length = 0;
    // Nobody follows these jobs any more: cancel them as the app's Cancel does.
    for (const id of this.ownJobs) this.jobs.cancel(id);
    this.ownJobs.clear();
  }
}

/** The envelope of a request; the method and arguments are checked by callApi. */
function parseRequest(text: string): Request | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { id, method, args } = value as Record<string, unknown>;
  if (typeof id !== 'number' || !Number.isSafeInteger(id)) return undefined;
  return { id, method, args };
}
