// Package scsi is a SCSI logical unit: the block-device command set
// (SPC-4 and SBC-3, the subset initiators use) answered from a Backend. It
// knows nothing of iSCSI or any other transport: a transport hands each
// command's CDB and data-out buffer to LU.Execute and sends back the
// status, data-in and sense it returns.
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
// zeros without UNMAP calls Zero without punch. GET LBA STATUS answers
// "mapped or unknown", the one status that is always true, since a
// Backend does not say which blocks it holds.
//
// # Validation
//
// One table (commands.go) lists every command with its CDB length and its
// CDB usage data: the bits an initiator may set. Execute rejects a CDB
// with any other bit set (ILLEGAL REQUEST, INVALID FIELD IN CDB, with the
// sense-key-specific field pointer naming the byte and bit), and REPORT
// SUPPORTED OPERATION CODES reports the same table, so what the unit
// claims and what it accepts cannot drift apart. Protection information,
// ANCHOR and the obsolete LBDATA/PBDATA bits are not supported, so their
// fields are not in the usage data and a CDB that sets them is refused.
//
// # Sense data
//
// Fixed format (response code 0x70) only: the Control mode page reports
// D_SENSE=0 and REQUEST SENSE with DESC=1 is refused. Sense goes back with
// the CHECK CONDITION status (autosense); nothing is kept for a later
// REQUEST SENSE, which answers NO SENSE. The unit keeps no state between
// commands (no reservations, no unit attentions, no changeable mode
// parameters), which is what makes Execute safe for concurrent use.
package scsi
