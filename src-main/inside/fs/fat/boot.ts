/**
 * The FAT boot sector (BPB): geometry, the FAT12/16/32 decision by cluster count (as Microsoft's specification
 * and blkid make it), volume id and label.
 */
import type { Window } from '../../source';

export interface FatGeometry {
  bytesPerSector: number;
  clusterSize: number;
  reservedSectors: number;
  fatCount: number;
  fatSectors: number;
  rootEntries: number;
  totalSectors: number;
  /** Byte offsets within the volume. */
  fatStart: number;
  rootDirStart: number;
  dataStart: number;
  clusterCount: number;
  bits: 12 | 16 | 32;
  rootCluster: number;
  fsInfoSector: number;
  volumeId: number;
  bootLabel: string;
}

/** Parses a FAT boot sector; undefined when it is not one. */
export function parseFatBoot(b: Uint8Array, volumeSize: number): FatGeometry | undefined {
  if (b.length < 512 || b[510] !== 0x55 || b[511] !== 0xaa) return undefined;
  if (b[0] !== 0xeb && b[0] !== 0xe9) return undefined;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const bytesPerSector = v.getUint16(11, true);
  const secPerCluster = b[13];
  const reservedSectors = v.getUint16(14, true);
  const fatCount = b[16];
  const rootEntries = v.getUint16(17, true);
  const total16 = v.getUint16(19, true);
  const media = b[21];
  const fat16 = v.getUint16(22, true);
  const total32 = v.getUint32(32, true);
  if (![512, 1024, 2048, 4096].includes(bytesPerSector)) return undefined;
  if (secPerCluster === 0 || (secPerCluster & (secPerCluster - 1)) !== 0) return undefined;
  if (reservedSectors === 0 || fatCount === 0 || fatCount > 4) return undefined;
  if (media !== 0xf0 && media < 0xf8) return undefined;
  // NTFS and exFAT boot sectors are not FAT: they carry their own names here.
  const oem = new TextDecoder('latin1').decode(b.subarray(3, 11));
  if (oem === 'NTFS    ' || oem === 'EXFAT   ') return undefined;
  const fatSectors = fat16 || v.getUint32(36, true);
  const totalSectors = total16 || total32;
  if (fatSectors === 0 || totalSectors === 0) return undefined;
  const rootDirSectors = Math.ceil((rootEntries * 32) / bytesPerSector);
  const metaSectors = reservedSectors + fatCount * fatSectors + rootDirSectors;
  if (metaSectors >= totalSectors) return undefined;
  const clusterCount = Math.floor((totalSectors - metaSectors) / secPerCluster);
  // As the Linux kernel decides it: no 16-bit FAT size means FAT32 (mkfs.vfat -F 32 makes small ones), else the
  // cluster count tells FAT12 from FAT16.
  const bits = fat16 === 0 ? 32 : clusterCount < 4085 ? 12 : 16;
  const ext = bits === 32 ? 64 : 36; // where the extended BPB (drive number...) starts
  const hasSig = b[ext + 2] === 0x29 || b[ext + 2] === 0x28;
  return {
    bytesPerSector,
    clusterSize: secPerCluster * bytesPerSector,
    reservedSectors,
    fatCount,
    fatSectors,
    rootEntries,
    totalSectors: Math.min(totalSectors, Math.floor(volumeSize / bytesPerSector)),
    fatStart: reservedSectors * bytesPerSector,
    rootDirStart: (reservedSectors + fatCount * fatSectors) * bytesPerSector,
    dataStart: metaSectors * bytesPerSector,
    clusterCount,
    bits,
    rootCluster: bits === 32 ? v.getUint32(44, true) : 0,
    fsInfoSector: bits === 32 ? v.getUint16(48, true) : 0,
    volumeId: hasSig ? v.getUint32(ext + 3, true) : 0,
    bootLabel: hasSig ? new TextDecoder('latin1').decode(b.subarray(ext + 7, ext + 18)) : '',
  };
}

export async function probeFat(win: Window): Promise<FatGeometry | undefined> {
  if (win.size < 512) return undefined;
  return parseFatBoot(await win.bytes(0, 512), win.size);
}

/** The volume id as blkid prints a FAT UUID: XXXX-XXXX, upper-case. */
export function fatUuid(id: number): string {
  const h = id.toString(16).toUpperCase().padStart(8, '0');
  return `${h.slice(0, 4)}-${h.slice(4)}`;
}
