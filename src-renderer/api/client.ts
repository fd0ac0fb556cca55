/**
 * The contract's methods built from API_METHODS on one call function, for both bridges (Electron's preload and
 * the browser host's WebSocket): no list of methods is kept by hand on this side.
 */
import { API_METHODS, type ApiCaller, type ApiMethod, type DiskwrightApi, type JobEvent, type Unsubscribe } from '../../src-shared/api';

/** Every contract method on `call`; job events from `onJobEvent`. */
export function clientOn(call: ApiCaller, onJobEvent: (listener: (e: JobEvent) => void) => Unsubscribe): DiskwrightApi {
  const methods = Object.fromEntries(API_METHODS.map((method: ApiMethod) => [method, (...args: never) => call(method, args)]));
  return { ...(methods as Omit<DiskwrightApi, 'onJobEvent'>), onJobEvent };
}
