/**
 * Names for the common partition types, as sfdisk names them (`sfdisk --label gpt -T`, `sfdisk --label dos -T`;
 * test/unit/inside-types.test.ts holds every name here to sfdisk's). A type not listed is shown as its code.
 */
const GPT: Record<string, string> = {
  'C12A7328-F81F-11D2-BA4B-00A0C93EC93B': 'EFI System',
  '21686148-6449-6E6F-744E-656564454649': 'BIOS boot',
  '024DEE41-33E7-11D3-9D69-0008C781F39F': 'MBR partition scheme',
  'E3C9E316-0B5C-4DB8-817D-F92DF00215AE': 'Microsoft reserved',
  'EBD0A0A2-B9E5-4433-87C0-68B6B72699C7': 'Microsoft basic data',
  '5808C8AA-7E8F-42E0-85D2-E1E90434CFB3': 'Microsoft LDM metadata',
  'AF9B60A0-1431-4F62-BC68-3311714A69AD': 'Microsoft LDM data',
  'DE94BBA4-06D1-4D40-A16A-BFD50179D6AC': 'Windows recovery environment',
  'E75CAF8F-F680-4CEE-AFA3-B001E56EFC2D': 'Microsoft Storage Spaces',
  '0657FD6D-A4AB-43C4-84E5-0933C84B4F4F': 'Linux swap',
  '0FC63DAF-8483-4772-8E79-3D69D8477DE4': 'Linux filesystem',
  '3B8F8425-20E0-4F3B-907F-1A25A76F98E8': 'Linux server data',
  '44479540-F297-41B2-9AF7-D131D5F0458A': 'Linux root (x86)',
  '4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709': 'Linux root (x86-64)',
  '69DAD710-2CE4-4E3C-B16C-21A1D49ABED3': 'Linux root (ARM)',
  'B921B045-1DF0-41C3-AF44-4C6F280D3FAE': 'Linux root (ARM-64)',
  '72EC70A6-CF74-40E6-BD49-4BDA08E8F224': 'Linux root (RISC-V-64)',
  '8DA63339-0007-60C0-C436-083AC8230908': 'Linux reserved',
  '933AC7E1-2EB4-4F13-B844-0E14E2AEF915': 'Linux home',
  'A19D880F-05FC-4D3B-A006-743F0F84911E': 'Linux RAID',
  'E6D6D379-F507-44C2-A23C-238F2A3DF928': 'Linux LVM',
  '4D21B016-B534-45C2-A9FB-5C16E091FD2D': 'Linux variable data',
  'BC13C2FF-59E6-4262-A352-B275FD6F7172': 'Linux extended boot',
  '516E7CB4-6ECF-11D6-8FF8-00022D09712B': 'FreeBSD data',
  '83BD6B9D-7F41-11DC-BE0B-001560B84F0F': 'FreeBSD boot',
  '516E7CB5-6ECF-11D6-8FF8-00022D09712B': 'FreeBSD swap',
  '516E7CB6-6ECF-11D6-8FF8-00022D09712B': 'FreeBSD UFS',
  '516E7CBA-6ECF-11D6-8FF8-00022D09712B': 'FreeBSD ZFS',
  '48465300-0000-11AA-AA11-00306543ECAC': 'Apple HFS/HFS+',
  '7C3457EF-0000-11AA-AA11-00306543ECAC': 'Apple APFS',
  'FE3A2A5D-4F32-41A7-B725-ACCC3285A309': 'ChromeOS kernel',
  '3CB8E202-3B7E-47DD-8A3C-7FF2A13CFCEC': 'ChromeOS root fs',
  'AA31E02A-400F-11DB-9590-000C2911D1B8': 'VMware VMFS',
};

const MBR: Record<string, string> = {
  '1': 'FAT12',
  '4': 'FAT16 <32M',
  '5': 'Extended',
  '6': 'FAT16',
  '7': 'HPFS/NTFS/exFAT',
  b: 'W95 FAT32',
  c: 'W95 FAT32 (LBA)',
  e: 'W95 FAT16 (LBA)',
  f: "W95 Ext'd (LBA)",
  '11': 'Hidden FAT12',
  '14': 'Hidden FAT16 <32M',
  '16': 'Hidden FAT16',
  '17': 'Hidden HPFS/NTFS',
  '1b': 'Hidden W95 FAT32',
  '1c': 'Hidden W95 FAT32 (LBA)',
  '1e': 'Hidden W95 FAT16 (LBA)',
  '27': 'Hidden NTFS WinRE',
  '82': 'Linux swap / Solaris',
  '83': 'Linux',
  '85': 'Linux extended',
  '8e': 'Linux LVM',
  a5: 'FreeBSD',
  a6: 'OpenBSD',
  a9: 'NetBSD',
  af: 'HFS / HFS+',
  ee: 'GPT',
  ef: 'EFI (FAT-12/16/32)',
  fb: 'VMware VMFS',
  fd: 'Linux raid autodetect',
};

/** The name of a partition type (a GPT type GUID, or an MBR type byte in sfdisk's hex), or undefined. */
export function partitionTypeName(table: 'gpt' | 'mbr' | null, type: string): string | undefined {
  if (table === 'gpt') return GPT[type.toUpperCase()];
  if (table === 'mbr') return MBR[type.toLowerCase().replace(/^0+(?=.)/, '')];
  return undefined;
}

/** Every named type, for the test that holds the names to sfdisk's. */
export const NAMED_TYPES = { gpt: GPT, mbr: MBR } as const;
