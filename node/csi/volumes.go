package csi

import (
	"context"

	"github.com/weft-mesh/weft/api"
)

// Volumes is what the plugin asks of the daemon; *api.Client has it.
type Volumes interface {
	Status(ctx context.Context) (api.Status, error)
	ListDisks(ctx context.Context) ([]api.DiskInfo, error)
	CreateDisk(ctx context.Context, spec api.DiskSpec) (api.DiskInfo, error)
	DiskInfo(ctx context.Context, name string) (api.DiskInfo, error)
	RemoveDisk(ctx context.Context, name string) error
	// Clone makes disk name from src, recording creator as its
	// creator (api.DiskSpec.Creator).
	Clone(ctx context.Context, src api.Ref, name, creator string) (api.DiskInfo, error)
	ListReplicas(ctx context.Context, disk string) ([]api.ReplicaInfo, error)
	// ReplicaDisks names the disks with replicas, removed ones included.
	ReplicaDisks(ctx context.Context) ([]string, error)
	CreateReplica(ctx context.Context, disk, name string) (api.ReplicaInfo, error)
	RemoveReplica(ctx context.Context, disk, replica string) error
	// Mount makes the daemon serve the node's disks as files under dir.
	Mount(ctx context.Context, dir string) (api.MountInfo, error)
}
