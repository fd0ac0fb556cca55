/**
 * The window's lockdown, applied to the session and to every web contents: the renderer is treated as
 * untrusted. It asks for nothing (no permission is granted or reported as granted: camera, microphone,
 * notifications, clipboard reading, geolocation, …), may pick no device (HID, serial, USB, Bluetooth), may not
 * capture the screen, and may not navigate any frame, redirect, open windows or attach webviews.
 */
import type { Session, WebContents } from 'electron';

/** Every permission request and check: denied. */
export function denyPermissions(ses: Session): void {
  ses.setPermissionRequestHandler((_wc, _permission, callback) => callback(false));
  ses.setPermissionCheckHandler(() => false);
  // WebHID, Web Serial, WebUSB: no device may be granted or chosen.
  ses.setDevicePermissionHandler(() => false);
  ses.on('select-hid-device', (event, _details, callback) => {
    event.preventDefault();
    callback(null);
  });
  ses.on('select-serial-port', (event, _ports, _wc, callback) => {
    event.preventDefault();
    callback('');
  });
  ses.on('select-usb-device', (event, _details, callback) => {
    event.preventDefault();
    callback();
  });
  // getDisplayMedia: no source is given, so the request fails.
  ses.setDisplayMediaRequestHandler((_request, callback) => callback({}));
  ses.setBluetoothPairingHandler((_details, callback) => callback({ confirmed: false }));
}

/** Navigation, redirects, new windows and webviews: none, in every frame of every web contents. */
export function lockNavigation(contents: WebContents): void {
  contents.on('will-navigate', (e) => e.preventDefault());
  contents.on('will-frame-navigate', (e) => e.preventDefault());
  contents.on('will-redirect', (e) => e.preventDefault());
  contents.on('will-attach-webview', (e) => e.preventDefault());
  contents.on('select-bluetooth-device', (e, _devices, callback) => {
    e.preventDefault();
    callback('');
  });
  contents.setWindowOpenHandler(() => ({ action: 'deny' }));
}
