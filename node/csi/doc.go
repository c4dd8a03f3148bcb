// Package csi is weft's Container Storage Interface plugin: the identity,
// controller and node services of the CSI spec (v1.13), served over gRPC on
// a unix socket, in front of the local daemon's API.
//
// What maps to what:
//
//   - A volume is a disk. Its volume ID is the disk's name, which is the
//     CSI name when that is a valid disk name (letters, digits, '.', '_',
//     '-', at most 128, not starting with '.' or '-') and otherwise
//     "csi-" and the first 32 hex digits of the name's SHA-256: the same
//     name always maps to the same disk, which is what makes CreateVolume
//     idempotent across restarts of the plugin without any state of its own.
//   - A snapshot is a replica. Its ID is "DISK@REPLICA", the replica name
//     mapped from the CSI name the same way.
//   - CreateVolume from a snapshot clones the replica; from a volume it
//     clones the disk (committing its head first). Both are O(1) weft
//     clones sharing blocks, never copies. The daemon records a clone's
//     origin (the snapshot's or the volume's ID) with the disk, so a
//     retried CreateVolume of the same name from another source, or with
//     a source where the first had none, fails with ALREADY_EXISTS.
//   - Pagination tokens are "after:" and the last ID of the page: the next
//     page starts at the first ID sorted after it, so entries added or
//     removed between pages neither shift nor repeat the others.
//
// Disks cannot be resized (the volume package has no resize), so the
// plugin does not advertise EXPAND_VOLUME.
//
// The node service reaches a disk as the file DIR/<disk>.img of a FUSE
// mount of the node's disks that the daemon serves at a directory the
// plugin chooses. A block volume is a loop device on that file,
// bind-mounted at the target path; a mount volume is an ext4 file system
// on that loop device (made on first use), mounted at the staging path
// and bind-mounted at each target path. That needs root (loop devices,
// mounts); the identity and controller services do not. Only the node
// that owns a disk writes it: staging or publishing for writing a disk
// another node owns fails with FAILED_PRECONDITION.
package csi
