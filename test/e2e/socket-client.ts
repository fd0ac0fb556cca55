/** The WebSocket side of the browser host, as the end-to-end tests speak it. */
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import type { JobEvent, WireMessage } from '../../src-shared/api';
import type { Host } from '../../src-main/host/server';

/** A client of the browser host's WebSocket: calls by method name, collects pushed job events. */
export class SocketClient {
  private nextId = 1;
  readonly events: JobEvent[] = [];
  private readonly waiting = new Map<number, (m: WireMessage) => void>();
  private eventWaiters: Array<() => void> = [];
  constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const msg = JSON.parse(data.toString()) as WireMessage;
      if ('event' in msg) {
        this.events.push(msg.event);
        for (const w of this.eventWaiters.splice(0)) w();
      } else this.waiting.get(msg.id)?.(msg);
    });
  }
  static async connect(h: Host): Promise<SocketClient> {
    const u = new URL(h.url);
    const ws = new WebSocket(`ws://127.0.0.1:${h.port}/ws?token=${u.searchParams.get('token')}`, { origin: u.origin });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return new SocketClient(ws);
  }
  call(method: string, args: unknown): Promise<WireMessage> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.ws.send(JSON.stringify({ id, method, args }));
    });
  }
  async result<T>(method: string, args: unknown): Promise<T> {
    const r = await this.call(method, args);
    assert.ok('result' in r, `${method} ${JSON.stringify(args)}: ${JSON.stringify(r)}`);
    return r.result as T;
  }
  async error(method: string, args: unknown): Promise<{ code: string; message: string; path?: string }> {
    const r = await this.call(method, args);
    assert.ok('error' in r, `${method} ${JSON.stringify(args)} should fail: ${JSON.stringify(r)}`);
    return r.error;
  }
  async until(pred: (events: JobEvent[]) => boolean): Promise<void> {
    while (!pred(this.events)) await new Promise<void>((r) => this.eventWaiters.push(r));
  }
  close(): void {
    this.ws.close();
  }
}
