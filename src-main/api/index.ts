/**
 * The one implementation of the contract on top of the services. The browser host and Electron both
 * call into it through `callApi`, which validates arguments first, so the two faces cannot drift apart.
 */
import type { ApiArgs, ApiMethod, ApiResult, DirListing, DiskErrorDto, DiskwrightApi, FormatName, ImageInfo, JobEvent, JobId, JobSpec, MapPicture, OptionSpec } from '../../src-shared/api';
import { DiskError, toDiskError } from '../block/errors';
import { driverFor } from '../block/registry';
import type { BackingPolicy } from '../block/types';
import { listDir } from '../services/browse';
import { inspectImage } from '../services/info';
import type { JobManager } from '../services/jobs';
import { mapPicture } from '../services/map';
import { isApiMethod, parseArgs } from './schemas';

export { ARG_SCHEMAS, isApiMethod, parseArgs } from './schemas';

export interface ApiOptions {
  /** How far backing files may be followed; both faces use 'inside-folder' until the UI asks. */
  backingPolicy?: BackingPolicy;
  /** The native open dialog; absent in the browser host, where pickImage answers undefined. */
  pickImage?: () => Promise<string | undefined>;
}

/** The contract implemented with the services. Arguments are assumed valid: go through callApi from outside. */
export function createApi(jobs: JobManager, opts: ApiOptions = {}): DiskwrightApi {
  const backingPolicy = opts.backingPolicy ?? 'inside-folder';
  return {
    async inspect(path: string): Promise<ImageInfo> {
      try {
        return await inspectImage(path, { backingChain: true, backingPolicy });
      } catch (chainErr) {
        // The image itself may be fine while a backing file is missing or lies outside its folder:
        // show the image and say why its chain stops, rather than showing nothing.
        const info = await inspectImage(path, { backingChain: false, backingPolicy });
        if (info['backing-filename'] === undefined) throw chainErr;
        return { ...info, 'backing-error': toDiskError(chainErr).toDto() };
      }
    },
    mapPicture(path: string, buckets: number): Promise<MapPicture> {
      return mapPicture(path, buckets, { backingPolicy });
    },
    async createOptions(format: FormatName): Promise<OptionSpec[]> {
      // A copy: the registry's specs are shared by the CLI and must not be changed by a caller.
      return structuredClone(driverFor(format).createOptions);
    },
    listDir(path?: string): Promise<DirListing> {
      return listDir(path);
    },
    async pickImage(): Promise<string | undefined> {
      return opts.pickImage ? opts.pickImage() : undefined;
    },
    async startJob(spec: JobSpec): Promise<JobId> {
      return jobs.start(spec);
    },
    async cancelJob(id: JobId): Promise<void> {
      jobs.cancel(id);
    },
    onJobEvent(listener: (e: JobEvent) => void) {
      return jobs.onEvent(listener);
    },
  };
}

/** Calls one method by name with untrusted arguments: unknown names and bad arguments give EINVAL. */
export async function callApi(api: DiskwrightApi, method: unknown, args: unknown): Promise<unknown> {
  if (!isApiMethod(method)) throw new DiskError('EINVAL', `unknown method ${JSON.stringify(String(method)).slice(0, 80)}`);
  return invoke(api, method, parseArgs(method, args));
}

function invoke<M extends ApiMethod>(api: DiskwrightApi, method: M, args: ApiArgs<M>): Promise<ApiResult<M>> {
  const fn = api[method] as (...a: ApiArgs<M>) => Promise<ApiResult<M>>;
  return fn.apply(api, args);
}

/** What crosses a bridge when a call fails: a code and a plain message, never a stack. */
export function errorDto(err: unknown): DiskErrorDto {
  return toDiskError(err).toDto();
}
