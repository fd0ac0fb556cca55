/**
 * The app's views and their URLs, one entry each (see router.ts). Wizards are on the URL too, so Back
 * closes a wizard instead of leaving the app, and a reload starts the wizard again on the same image.
 * Order matters: the first active entry is what is shown; home is last.
 */
import type { FormatName } from '../src-shared/api';
import { FORMAT_NAMES } from '../src-shared/api';
import type { RouteEntry } from './router';
import { useCheckRepairStore } from './stores/checkRepair';
import { useCompactStore } from './stores/compact';
import { useConvertStore } from './stores/convert';
import { useImageStore } from './stores/image';
import { useNewImageStore } from './stores/newImage';
import { useSnapshotsStore } from './stores/snapshots';
import CheckRepairView from './views/CheckRepairView.vue';
import CompactView from './views/CompactView.vue';
import ConvertView from './views/ConvertView.vue';
import HomeView from './views/HomeView.vue';
import InspectView from './views/InspectView.vue';
import NewImageView from './views/NewImageView.vue';
import SnapshotsView from './views/SnapshotsView.vue';

function formatOf(text: string | undefined): FormatName | undefined {
  return (FORMAT_NAMES as readonly string[]).includes(text ?? '') ? (text as FormatName) : undefined;
}

export function appRoutes(): RouteEntry[] {
  const image = useImageStore();
  const checkRepair = useCheckRepairStore();
  const newImage = useNewImageStore();
  const convert = useConvertStore();
  const snapshots = useSnapshotsStore();
  const compact = useCompactStore();
  return [
    {
      name: 'compact',
      view: CompactView,
      active: () => compact.active,
      query: () => ({ path: compact.path }),
      enter: (q) => (q.path ? compact.start(q.path) : undefined),
      leave: () => {
        compact.cancel();
        compact.close();
      },
    },
    {
      name: 'check',
      view: CheckRepairView,
      active: () => checkRepair.active,
      query: () => ({ path: checkRepair.path }),
      enter: (q) => (q.path ? checkRepair.start(q.path) : undefined),
      leave: () => {
        checkRepair.cancel();
        checkRepair.close();
      },
    },
    {
      name: 'new',
      view: NewImageView,
      active: () => newImage.active,
      enter: () => newImage.start(),
      leave: () => newImage.close(),
    },
    {
      name: 'convert',
      view: ConvertView,
      active: () => convert.active,
      // An exported snapshot is on the URL too: a reload must not quietly convert the current state instead.
      query: () => ({ source: convert.source?.filename ?? '', snapshot: convert.snapshot?.id ?? '' }),
      enter: (q) => (q.source ? convert.start(q.source, undefined, q.snapshot || undefined) : undefined),
      leave: () => {
        convert.cancel();
        convert.close();
      },
    },
    {
      name: 'snapshots',
      view: SnapshotsView,
      active: () => snapshots.active,
      query: () => ({ path: snapshots.path }),
      enter: (q) => (q.path ? snapshots.open(q.path) : undefined),
      leave: () => snapshots.close(),
    },
    {
      name: 'inspect',
      view: InspectView,
      active: () => image.info !== null,
      query: () => ({ path: image.path, format: image.format ?? '' }),
      enter: (q) => (q.path ? image.open(q.path, formatOf(q.format)) : undefined),
      leave: () => image.close(),
    },
    { name: '', view: HomeView, active: () => true },
  ];
}
