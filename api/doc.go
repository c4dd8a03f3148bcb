// Package api is the local API contract between the weft CLI and its
// daemon: the JSON request and response types of the daemon's HTTP API on
// HOME/weft.sock, its error codes, the typed Client, and the export stream.
// It imports nothing else of weft, so the CLI needs no daemon internals to
// talk to the daemon.
//
// # Routes
//
// Requests and responses are JSON; errors are ErrorBody
// ({"error": "...", "code": "..."}) with a status that follows the code:
// 400 invalid, 404 not_found, 409 exists, read_only, conflict, not_owner
// or busy, 507 no_space, 500 corrupt or internal. An *APIError unwraps to
// the error of its code (ErrNotFound, ...).
//
//	GET    /v1/status                                 Status
//	GET    /v1/disks                                  []DiskInfo
//	POST   /v1/disks                                  CreateDiskRequest -> 201 DiskInfo
//	GET    /v1/disks/{name}                           DiskInfo
//	DELETE /v1/disks/{name}[?force=true]              204; with force RemoveDiskResult
//	PUT    /v1/disks/{name}/import?block_size=&replicas=  raw bytes -> DiskInfo
//	GET    /v1/disks/{ref}/export                     export stream (see below)
//	POST   /v1/disks/{name}/import-file?block_size=&replicas=  passed file -> FileProgress lines
//	POST   /v1/disks/{ref}/export-file                passed file -> FileProgress lines
//	POST   /v1/disks/{ref}/clone                      CloneRequest -> 201 DiskInfo
//	POST   /v1/disks/{name}/commit                    DiskInfo
//	PUT    /v1/disks/{name}/acl                       ACLRequest -> DiskInfo
//	PUT    /v1/disks/{name}/chap                      CHAPRequest -> DiskInfo
//	GET    /v1/disks/{name}/replicas                  []ReplicaInfo
//	POST   /v1/disks/{name}/replicas                  CreateReplicaRequest -> 201 ReplicaInfo
//	POST   /v1/disks/{name}/replicas/{replica}/restore RestoreResult
//	DELETE /v1/disks/{name}/replicas/{replica}        204
//	POST   /v1/disks/{name}/move                      MoveRequest -> DiskInfo
//	POST   /v1/disks/{name}/take                      TakeRequest -> DiskInfo
//	POST   /v1/disks/{name}/recover                   RecoverRequest -> DiskInfo
//	GET    /v1/mounts                                 []MountInfo
//	POST   /v1/mounts                                 MountRequest -> 201 MountInfo
//	DELETE /v1/mounts?dir=DIR[&lazy=true]             204; 409 code "busy" if a file is open
//	GET    /v1/mounts/wait?dir=DIR                    204 once the mount is gone
//	GET    /v1/spacesuits                             []SpacesuitInfo
//	POST   /v1/spacesuits                             PublishRequest -> 201 SpacesuitInfo
//	DELETE /v1/spacesuits/{name@version}              204
//	GET    /v1/transfers                              []TransferInfo
//	POST   /v1/transfers                              TransferRequest -> 201 TransferInfo
//	GET    /v1/transfers/{id}                         TransferInfo
//	POST   /v1/transfers/{id}/cancel                  TransferInfo
//	GET    /v1/replicate                              []Policy
//	POST   /v1/replicate                              ReplicateRequest -> Policy
//	DELETE /v1/replicate/{disk}/{site}[?mode=]        PolicyRemoval
//	GET    /v1/id                                     IDInfo
//	POST   /v1/join                                   JoinRequest -> JoinResult
//	GET    /v1/peers                                  []Peer
//	DELETE /v1/peers/{id}                             204
//	POST   /v1/gc                                     GCStats
//	POST   /v1/scrub                                  ScrubResult
//
// A {ref} is DISK or DISK@REPLICA. The -file requests act on the regular
// file the client passes with the request (SCM_RIGHTS on the unix socket):
// the daemon reads it from its offset, or truncates, writes (sparse) and
// syncs it, and never opens a path for a client.
//
// # Export stream
//
// An export is a framed binary stream, so that the holes of a thin disk
// cost a few bytes instead of their size. All integers are big-endian.
//
//	header: "WEFTEXP1" | size u64 | block size u64
//	record: 'D' | offset u64 | length u32 | length bytes of data
//	        'H' | offset u64 | length u64                 (a run of zeros)
//	        'X' | length u32 | ErrorBody JSON             (the server failed; the stream ends)
//	        'E' | size u64                                (the stream is complete)
//
// Records cover [0, size) exactly once, in ascending order. A stream that
// ends without 'E' is truncated and must not be trusted (ErrTruncated).
package api
