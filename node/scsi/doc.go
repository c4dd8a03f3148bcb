// Package scsi is a SCSI logical unit: the block-device command set
// (SPC-4 and SBC-3, the subset initiators use) answered from a Backend. It
// knows nothing of iSCSI or any other transport: a transport hands each
// command's CDB and data-out to LU.Execute and sends back the status,
// data-in and sense it returns. It was written from the standards and
// checked against libiscsi's conformance suite (iscsi-test-cu); no target
// code was taken from anywhere.
//
// # Commands
//
//   - TEST UNIT READY, START STOP UNIT, PREVENT ALLOW MEDIUM REMOVAL:
//     accepted (the unit is always ready, its medium not removable).
//   - REQUEST SENSE: NO SENSE (sense goes back with each failed command).
//   - INQUIRY: standard data (direct-access, SPC-4, CMDQUE) and the VPD
//     pages 00h (supported pages), 80h (unit serial number), 83h (NAA and
//     T10 vendor ID designators), B0h (Block Limits), B1h (non-rotating)
//     and B2h (Logical Block Provisioning: thin).
//   - READ CAPACITY(10) and (16): 512-byte blocks, the disk block
//     exponent, LBPME and LBPRZ.
//   - READ and WRITE (6), (10), (12), (16): FUA on a write flushes.
//   - VERIFY and WRITE AND VERIFY (10), (12), (16): BYTCHK compares;
//     WRITE AND VERIFY flushes before it completes, as FUA does.
//   - COMPARE AND WRITE and ORWRITE(16): atomic against each other.
//   - WRITE SAME (10) and (16), UNMAP, GET LBA STATUS: see below.
//   - SYNCHRONIZE CACHE (10) and (16): Backend.Flush, what NBD's FLUSH
//     means; PRE-FETCH (10) and (16): a range check, as there is no cache
//     to fill.
//   - MODE SENSE and MODE SELECT (6) and (10): the caching (WCE=1),
//     control and informational exceptions pages, block descriptors
//     (long with LLBAA), the write-protect bit for a read-only unit.
//     Nothing is changeable: MODE SELECT takes back the current values
//     and refuses any change.
//   - REPORT LUNS, REPORT SUPPORTED OPERATION CODES.
//
// Not supported, answered INVALID COMMAND OPERATION CODE as SPC says:
// reservations (RESERVE/RELEASE, PERSISTENT RESERVE IN/OUT), EXTENDED
// COPY, SANITIZE, WRITE ATOMIC, READ DEFECT DATA, protection information.
//
// # Geometry
//
// Initiators see 512-byte logical blocks, what VMs, qemu and every
// initiator expect, whatever the disk's own block size. The disk's block
// size (BlockSize, e.g. 64 KiB) is reported as the physical block size
// (READ CAPACITY 16's LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT), as the
// optimal transfer length granularity and as the UNMAP granularity of the
// Block Limits VPD page, so that file systems align to it and discards
// cover whole disk blocks, which are what the disk can drop.
//
// # Thin provisioning
//
// The unit is thin (Logical Block Provisioning VPD: LBPU, LBPWS, LBPWS10,
// provisioning type thin; READ CAPACITY 16: LBPME). UNMAP and WRITE SAME
// with the UNMAP bit and zero data call Backend.Zero with punch, which
// drops whole disk blocks and writes zeros into the partial ones at the
// edges, so an unmapped block always reads as zeros (LBPRZ). WRITE SAME of
// zeros without UNMAP calls Zero without punch; either way no zero block
// is written out. GET LBA STATUS answers "mapped or unknown", the one
// status that is always true, since a Backend does not say which blocks
// it holds.
//
// # Validation
//
// One table (commands.go) lists every command with its CDB length and its
// CDB usage data: the bits an initiator may set. Execute refuses a CDB
// with any other bit set (ILLEGAL REQUEST, INVALID FIELD IN CDB, with the
// sense-key-specific field pointer naming the byte and bit), and REPORT
// SUPPORTED OPERATION CODES reports the same table, so what the unit
// claims and what it accepts cannot drift apart. Protection information,
// ANCHOR and the obsolete LBDATA/PBDATA bits are not supported, so their
// fields are not in the usage data and a CDB that sets them is refused.
// Then: a transfer over the unit's limit is INVALID FIELD IN CDB, a range
// past the end LBA OUT OF RANGE, a write to a read-only unit DATA
// PROTECT, WRITE PROTECTED, in that order.
//
// # Sense data
//
// Fixed format (response code 0x70) only: the Control mode page reports
// D_SENSE=0 and REQUEST SENSE with DESC=1 is refused. Sense goes back with
// the CHECK CONDITION status (autosense); nothing is kept for a later
// REQUEST SENSE. The unit keeps no state between commands (no
// reservations, no unit attentions, no changeable mode parameters), which
// is what makes Execute safe for concurrent use.
//
// # For a transport
//
//   - Data-out: ask the initiator (iSCSI R2T) for DataOutLen's bytes, cut
//     to its expected length, and pass on the data with Command.SentLen
//     set to the expected length (or all the data it sent). A WRITE with
//     less data than its CDB says writes what came (FCP-4's first
//     answer); WRITE SAME and COMPARE AND WRITE refuse any amount but
//     their CDB's, UNMAP and MODE SELECT a short one.
//   - Data-in: Execute cuts DataIn to Command.AllocLen; Result.Length is
//     what the CDB alone would send. The residual of a read is
//     AllocLen-Length, of a write the expected length minus DataOutLen:
//     positive an underflow, negative an overflow.
//   - REPORT LUNS is addressed to the target: ReportLUNs builds its data
//     for any set of LUNs, and a unit answers it with LUInfo.LUNs.
package scsi
