// Package fusefs serves a node's disks as files in a FUSE mount, so that
// operators and tools (losetup, mkfs, qemu-img, dd, fio) use a weft disk
// like any disk image.
//
// # Tree
//
//	DIR/<disk>.img                          the live head of a disk this node owns: read-write
//	DIR/<disk>.img                          a disk another node owns (Config.Remote): read-only
//	DIR/replicas/<disk>/<replica>.img       every replica: read-only
//	DIR/spacesuits/<name>@<version>.img     every spacesuit version: read-only
//
// The directories are read-only: files appear and vanish as disks,
// replicas and spacesuit versions are created, cloned, published and
// removed, never through the mount. Removing a file fails: EPERM for a
// disk this node owns (weft disk rm removes it, and refuses while it is
// in use: Mount.DiskHandles counts the open handles of its file), EROFS
// for every other file and directory. Nothing is cached by name: every
// lookup and directory listing asks the volume manager, and the kernel is
// told not to cache names (entry timeout 0), so a disk or spacesuit
// version created while mounted is visible at once and a removed one is
// gone at once. An inode stands for one incarnation: a disk removed and
// created again under the same name, or a replica name reused for another
// root, is a new inode, and a handle opened on the old one fails with EIO
// (reads, writes) or ENOENT (open, stat) instead of reaching the new disk.
// The same holds for a spacesuit version removed and published again. A
// replica or spacesuit version removed while a handle is open stays
// readable through that handle: the handle holds a view, which pins the
// image's blocks.
//
// # Image files
//
// A disk another node owns is shown at its last committed root, as an
// image: each commit the owner publishes is another inode, so a handle
// opened before keeps reading the root it opened.
//
// Replica and spacesuit files are the same read-only image files: as large
// as the image, mode 0444, timestamped when the image was made; opening
// for writing, truncating or writing fails with EROFS. A spacesuit version
// is opened by the reference NAME@VERSION, which a replica of disk NAME
// named VERSION shadows: while such a replica holds another root, the
// spacesuit's file lists but does not open (ENOENT) rather than serve the
// replica's content.
//
// # Disk files
//
// A disk file is exactly as large as the disk. Reads and writes go to the
// disk head (volume.Head), the same state NBD serves; a write past the end
// fails with EFBIG, and truncate or any other size change fails with EPERM:
// disks are resized through weft, not through the mount. fsync, fdatasync
// and close after writing (FLUSH) call Head.Flush, which makes every
// acknowledged write durable on this node, the same promise as an NBD
// FLUSH; mkfs and losetup depend on both succeeding. fallocate with
// FALLOC_FL_PUNCH_HOLE or FALLOC_FL_ZERO_RANGE zeroes the range (whole
// blocks stop taking space at the next commit), so discard through a loop
// device frees blocks; plain preallocation inside the disk is a no-op.
//
// # Caching
//
// By default disk files use the kernel page cache without
// FOPEN_KEEP_CACHE and without the writeback cache: writes pass through to
// the head before write(2) returns, reads are served from the cache once
// read, and every open drops what an earlier open cached. That keeps
// sequential reads and re-reads fast, at one cost: a write made through
// another path (NBD, a restore) while a file is held open is not seen by
// that open file's cached pages until it is reopened, and pages an open
// file already cached still read after its disk is removed (everything
// else fails with EIO) until the daemon drops them (Mount.DropRemovedDisk,
// which weft disk rm --force calls). Config.DirectIO trades the cache for coherence:
// every read goes to the head. Image files (replicas and spacesuit
// versions) never change (an inode is one root), so they keep their cache
// across opens (FOPEN_KEEP_CACHE).
//
// A disk file opened with O_DIRECT (QEMU's cache=none, losetup
// --direct-io) is served in the kernel's direct-I/O mode with parallel
// writes: writes from several threads reach the daemon at once instead of
// one after the other under the file's lock, and they drop the pages
// cached handles hold for the range. Mounts also ask for asynchronous
// direct I/O, so a queue of O_DIRECT requests (libaio, io_uring: QEMU's
// aio=native) arrives together.
//
// The writeback cache is not used: with it, write(2) would return before
// the daemon has the data, so a replica or commit taken right after a
// write could miss it, and a write past the end would fail only at
// writeback. A VM's guest keeps its own cache anyway.
//
// Requests are up to Config.MaxWrite bytes (1 MiB by default), so large
// sequential I/O costs one round trip to the daemon per megabyte.
package fusefs
