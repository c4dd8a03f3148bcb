package cluster

import (
	"context"
	"slices"
	"strings"

	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/volume"
)

// CatalogDiskInfo is what a disk's catalog record says of it, with no look
// at its blocks: its lists are those its owner applies (whether CHAP is on
// is not said: the CHAP user names stay on the owner with the secrets).
func CatalogDiskInfo(e catalog.Entry) volume.DiskInfo {
	return volume.DiskInfo{
		Name: strings.TrimPrefix(e.Key, catalog.DiskPrefix), Size: e.Size, BlockSize: e.BlockSize,
		Replicas: e.Replicas, Sync: e.Sync, Root: e.Root, Created: e.Created, Committed: e.Modified,
		Allow: slices.Clone(e.Allow), Initiators: slices.Clone(e.Initiators), Origin: e.Origin, Creator: e.Creator,
	}
}

// RemoteDisk describes a disk this node does not hold from its catalog
// record e, counting what the blocks held here say of its use.
func (c *Cluster) RemoteDisk(ctx context.Context, e catalog.Entry) volume.DiskInfo {
	info := CatalogDiskInfo(e)
	used, err := c.views.RootBytes(ctx, e.Root, e.BlockSize)
	if err != nil {
		c.log.Debug("size of a remote disk", "disk", info.Name, "err", err)
	}
	info.UsedBytes = used
	info.ReplicaCount = len(c.cat.List(catalog.ReplicaPrefix + info.Name + "/"))
	return info
}

// CatalogReplicas lists the replicas of disk the catalog names, with the
// local details (used bytes) of those this node holds (local). It answers
// replica ls on a node that does not own the disk. The error is Missing's
// when neither the catalog nor local knows the disk.
func (c *Cluster) CatalogReplicas(ctx context.Context, disk string, local []volume.ReplicaInfo) ([]volume.ReplicaInfo, error) {
	_, known := c.cat.Get(catalog.DiskKey(disk))
	es := c.cat.List(catalog.ReplicaPrefix + disk + "/")
	if !known && len(es) == 0 && len(local) == 0 {
		return nil, c.Missing(volume.Ref{Disk: disk})
	}
	byName := map[string]volume.ReplicaInfo{}
	for _, r := range local {
		byName[r.Name] = r
	}
	out := make([]volume.ReplicaInfo, 0, len(es))
	for _, e := range es {
		name := strings.TrimPrefix(e.Key, catalog.ReplicaPrefix+disk+"/")
		if r, ok := byName[name]; ok {
			out = append(out, r)
			delete(byName, name)
			continue
		}
		used, err := c.views.RootBytes(ctx, e.Root, e.BlockSize)
		if err != nil {
			c.log.Debug("size of a remote replica", "disk", disk, "replica", name, "err", err)
		}
		out = append(out, volume.ReplicaInfo{Disk: disk, Name: name, Root: e.Root, Size: e.Size,
			BlockSize: e.BlockSize, UsedBytes: used, Created: e.Created})
	}
	for _, r := range byName { // held here, not (yet) in the catalog
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b volume.ReplicaInfo) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}
