// Package node wires weft's parts into one daemon and serves the local API
// that the weft CLI talks to.
//
// A node lives in a home directory:
//
//	HOME/config.json   the node's Config (site, listen addresses, NBD and HTTP addresses)
//	HOME/identity.key  the node's Ed25519 key, PEM PKCS#8, mode 0600
//	HOME/lock          flock'ed by the running daemon: one daemon per home
//	HOME/weft.sock     the local API, HTTP/JSON over a unix socket, mode 0600
//	HOME/blocks/       the block store
//	HOME/volumes/      disk metadata and write overlays
//
// # Local API
//
// Requests and responses are JSON; errors are {"error": "...", "code": "..."}
// with a status that follows the error: 400 invalid, 404 not found, 409
// exists or read-only, 507 out of space, 500 anything else.
//
//	GET    /v1/status                                 Status
//	GET    /v1/disks                                  []volume.DiskInfo
//	POST   /v1/disks                                  CreateDiskRequest -> 201 volume.DiskInfo
//	GET    /v1/disks/{name}                           volume.DiskInfo
//	DELETE /v1/disks/{name}                           204
//	PUT    /v1/disks/{name}/import?block_size=&replicas=  raw bytes -> volume.DiskInfo
//	GET    /v1/disks/{ref}/export                     export stream (see below)
//	POST   /v1/disks/{name}/import-file?block_size=&replicas=  passed file -> FileProgress lines
//	POST   /v1/disks/{ref}/export-file                passed file -> FileProgress lines
//	POST   /v1/disks/{ref}/clone                      CloneRequest -> 201 volume.DiskInfo
//	POST   /v1/disks/{name}/commit                    volume.DiskInfo
//	GET    /v1/disks/{name}/replicas                  []volume.ReplicaInfo
//	POST   /v1/disks/{name}/replicas                  CreateReplicaRequest -> 201 volume.ReplicaInfo
//	POST   /v1/disks/{name}/replicas/{replica}/restore volume.RestoreResult
//	DELETE /v1/disks/{name}/replicas/{replica}        204
//	GET    /v1/mounts                                 []MountInfo
//	POST   /v1/mounts                                 MountRequest -> 201 MountInfo
//	DELETE /v1/mounts?dir=DIR[&lazy=true]             204; 409 code "busy" if a file is open
//	GET    /v1/mounts/wait?dir=DIR                    204 once the mount is gone
//	POST   /v1/gc                                     volume.GCStats
//	POST   /v1/scrub                                  ScrubResult
//
// A {ref} is DISK or DISK@REPLICA. The -file requests act on the regular
// file the client passes with the request (SCM_RIGHTS; see fdpass.go): the
// daemon reads it from its offset, or truncates, writes (sparse) and syncs
// it, and never opens a path for a client.
//
// # Export stream
//
// An export is a framed binary stream, so that the holes of a thin disk
// cost a few bytes instead of their size. All integers are big-endian.
//
//	header: "WEFTEXP1" | size u64 | block size u64
//	record: 'D' | offset u64 | length u32 | length bytes of data
//	        'H' | offset u64 | length u64                 (a run of zeros)
//	        'X' | length u32 | message                    (the server failed; the stream ends)
//	        'E' | size u64                                (the stream is complete)
//
// Records cover [0, size) exactly once, in ascending order. A stream that
// ends without 'E' is truncated and must not be trusted.
package node
