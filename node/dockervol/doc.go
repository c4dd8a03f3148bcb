// Package dockervol serves Docker's volume plugin protocol
// (docs.docker.com/engine/extend/plugins_volume): JSON over HTTP on a unix
// socket that dockerd finds in /run/docker/plugins/. Volumes are weft
// disks of the local daemon, which the plugin reaches over its API socket;
// a mounted volume is the disk's file in a FUSE mount of the daemon's
// disks, a loop device on it, and ext4 (made on first use) mounted under
// the plugin's directory (package blockfs).
//
// The plugin is its own process, apart from the daemon, so that it can
// restart without touching a mount: the loop devices and ext4 mounts are
// the kernel's, the FUSE file is the daemon's, and the mount references
// Docker holds (by mount ID) are kept in a state file that every change
// rewrites (write, fsync, rename) before it is acted on. A restarted
// plugin reads them back: the volume a container uses stays mounted and
// its last Unmount still takes it down. Plugin.Recover, at start, drops
// the references to volumes no longer mounted (the machine rebooted) and
// unmounts a volume left mounted with none.
//
// What does not survive is a restart of the daemon under a running
// container: the daemon serves the FUSE file under the loop device, so
// the container's file system gets I/O errors from then on, as a VM's disk
// would from a restarted NBD server. Stop such containers first. A volume
// mounted again after the daemon restarted gets a fresh loop device and
// mount (blockfs replaces stale ones).
package dockervol
