/**
 * THE list of format drivers, in probe order: raw last, since it matches anything with the lowest score.
 * Adding a format = its folder + one line here (+ its name in src-shared's FormatName). Everything a face
 * shows about a format (label, description, extensions, options) comes from its driver through this list.
 */
import type { FormatDriver } from '../block/types';
import { qcow2Driver } from './qcow2/driver';
import { vmdkDriver } from './vmdk/driver';
import { vhdxDriver } from './vhdx/driver';
import { vpcDriver } from './vpc/driver';
import { parallelsDriver } from './parallels/driver';
import { cowDriver } from './cow/driver';
import { vdiDriver } from './vdi/driver';
import { rawDriver } from './raw/driver';

export const FORMAT_DRIVERS: readonly FormatDriver[] = [qcow2Driver, vmdkDriver, vhdxDriver, vpcDriver, parallelsDriver, cowDriver, vdiDriver, rawDriver];
