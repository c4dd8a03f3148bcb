// Package blockfs puts a file system on a disk that weft exposes as a
// file (a disk's .img in a FUSE mount of the node's disks) and takes it
// off again: a loop device on the file, ext4 made on the first use of an
// empty disk, a mount at a directory.
//
// Every step is idempotent and safe to retry after a crash or a restart of
// the calling process: the state lives in the kernel (loop devices, mounts)
// and each call reads it back before it changes anything.
//
//   - A loop device is matched to its file by device and inode number
//     (LOOP_GET_STATUS64), never by path: after the FUSE mount that serves
//     the file is made again, the path is the same but the file is not, and
//     a loop device left on the old file is stale.
//   - A disk is formatted only if it is empty: blkid finds no signature on
//     it and its first MiB is zeros. A disk holding something blkid cannot
//     name is refused, never formatted over.
//   - A directory already mounted from the right device is left as it is;
//     one mounted from a stale device is detached lazily and mounted again.
//   - A writable loop device is flushed (fsync) before it is unbound:
//     losetup --detach drops its file without a flush, so writes made
//     through it without an fsync would not be durable.
//
// It needs root and util-linux (losetup, blkid) and e2fsprogs (mkfs.ext4).
// Both the Docker volume plugin and the CSI driver use it.
package blockfs
