import type { ApiArgs, ApiMethod, ApiResult, JobEvent, Unsubscribe, WireMessage, WireRequest } from '../../src-shared/api';
import { ApiError } from './errors';

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: ApiError) => void;
}

const LOST = new ApiError({ code: 'EIO', message: 'The connection to diskwright was lost. Is it still running? Start it again and reload this page.' });

/**
 * The browser host's WebSocket: contract calls by name, and the job events pushed on it (api/client.ts builds
 * the contract's methods on `call`). The socket is opened on first use and again after it drops; calls in
 * flight when it drops fail with a plain message rather than hanging.
 */
export class SocketConnection {
  private socket: WebSocket | undefined;
  private opening: Promise<WebSocket> | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Set<(e: JobEvent) => void>();

  constructor(private readonly url: string) {}

  private connect(): Promise<WebSocket> {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) return Promise.resolve(this.socket);
    if (this.opening) return this.opening;
    this.opening = new Promise<WebSocket>((resolve, reject) => {
      const ws = new WebSocket(this.url);
      ws.onopen = () => {
        this.socket = ws;
        this.opening = undefined;
        resolve(ws);
      };
      ws.onmessage = (ev: MessageEvent) => this.receive(ev.data);
      ws.onclose = () => {
        if (this.opening) {
          this.opening = undefined;
          reject(new ApiError({ code: 'EIO', message: 'Could not reach diskwright. Is it still running, and was the page opened with the address it printed?' }));
        }
        if (this.socket === ws) this.socket = undefined;
        for (const p of this.pending.values()) p.reject(LOST);
        this.pending.clear();
      };
    });
    return this.opening;
  }

  private receive(data: unknown): void {
    if (typeof data !== 'string') return;
    let msg: WireMessage;
    try {
      msg = JSON.parse(data) as WireMessage;
    } catch {
      return;
    }
    if ('event' in msg) {
      for (const l of this.listeners) l(msg.event);
      return;
    }
    const p = this.pending.get(msg.id);
    if (!p) return;
    this.pending.delete(msg.id);
    if ('error' in msg) p.reject(new ApiError(msg.error));
    else p.resolve(msg.result);
  }

  async call<M extends ApiMethod>(method: M, args: ApiArgs<M>): Promise<ApiResult<M>> {
    const ws = await this.connect();
    const id = this.nextId++;
    const req: WireRequest = { id, method, args };
    return new Promise<ApiResult<M>>((resolve, reject) => {
      this.pending.set(id, { resolve: (v) => resolve(v as ApiResult<M>), reject });
      ws.send(JSON.stringify(req));
    });
  }

  onJobEvent(listener: (e: JobEvent) => void): Unsubscribe {
    this.listeners.add(listener);
    // Job events are pushed on the socket, so it has to be open for them to arrive.
    void this.connect().catch(() => undefined);
    return () => {
      this.listeners.delete(listener);
    };
  }
}
