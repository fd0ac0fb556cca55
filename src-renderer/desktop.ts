/**
 * What the desktop app's main process asks of the window (src-shared/desktop.ts): the native menu's commands
 * (New Image, Open, Open Recent, Convert, Check & Repair) and the files the system opens with the app. Each is
 * routed as the matching button would be; a command arriving while a job runs is refused with a note rather
 * than abandoning the job. The browser host has no menu: there this does nothing.
 */
import { onBeforeUnmount, onMounted } from 'vue';
import { isDesktopCommand, type DesktopCommand } from '../src-shared/desktop';
import { onDesktopCommand } from './api';
import { useCheckRepairStore } from './stores/checkRepair';
import { useConvertStore } from './stores/convert';
import { useImageStore } from './stores/image';
import { useNewImageStore } from './stores/newImage';
import { useSnapshotsStore } from './stores/snapshots';
import { useUiStore } from './stores/ui';

function wizards() {
  return [useCheckRepairStore(), useNewImageStore(), useConvertStore(), useSnapshotsStore()];
}

/** True while a wizard runs a job: leaving it now would leave the job without a window to follow it. */
function jobRunning(): boolean {
  return wizards().some((w) => w.active && (w as { running?: boolean }).running === true);
}

function closeWizards(): void {
  for (const w of wizards()) if (w.active) w.close();
}

/** Shows an image on Inspect, from anywhere in the app (a drop, the menu, a file the system opened). */
export function openImagePath(path: string): void {
  const ui = useUiStore();
  if (jobRunning()) {
    ui.say(`A job is running in this window. Let it finish or cancel it, then open ${path} again.`);
    return;
  }
  closeWizards();
  ui.dismiss();
  void useImageStore().open(path);
}

/** One command from the main process, checked first (it crossed a bridge). */
export function runDesktopCommand(c: DesktopCommand): void {
  if (!isDesktopCommand(c)) return;
  const ui = useUiStore();
  if (c.command === 'open-path') return openImagePath(c.path);
  if (jobRunning()) {
    ui.say('A job is running in this window. Let it finish or cancel it first.');
    return;
  }
  const onScreen = useImageStore().info?.filename;
  switch (c.command) {
    case 'new-image':
      closeWizards();
      useNewImageStore().start();
      return;
    case 'convert':
    case 'check-repair':
      if (!onScreen) {
        ui.say(`Open an image first: ${c.command === 'convert' ? 'Convert' : 'Check & Repair'} works on the image on screen.`);
        return;
      }
      closeWizards();
      ui.dismiss();
      if (c.command === 'convert') void useConvertStore().start(onScreen);
      else useCheckRepairStore().start(onScreen);
      return;
  }
}

/** Mount once, in App.vue: follows the main process's commands while the app is on screen. */
export function useDesktopCommands(): void {
  let off: (() => void) | undefined;
  onMounted(() => {
    off = onDesktopCommand(runDesktopCommand);
  });
  onBeforeUnmount(() => off?.());
}
