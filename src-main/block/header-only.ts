import { DiskError } from './errors';
import type { ImageFile } from './file';
import type { FormatDriver, FormatName, HeaderInfo } from './types';

/**
 * A driver for a format whose header we recognise but whose data this build cannot read yet: probe and
 * describe work (so `info` shows the virtual size), opening for data gives one plain EUNSUPPORTED line.
 */
export function headerOnlyDriver(
  name: FormatName,
  meta: Pick<FormatDriver, 'label' | 'description' | 'extensions'>,
  probe: (head: Uint8Array, path: string) => number,
  describe: (file: ImageFile) => Promise<HeaderInfo>,
): FormatDriver {
  const unsupported = (what: string) => new DiskError('EUNSUPPORTED', `${name}: ${what} is not supported yet by this build (its header can be inspected)`);
  return {
    name,
    ...meta,
    concurrentCalls: false,
    probe,
    describe,
    createOptions: [],
    async open() {
      throw unsupported('reading and writing image data');
    },
  };
}
