package csi

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/weft-mesh/weft/api"
)

// Parameters of CreateVolume (a StorageClass's parameters).
const (
	paramReplicas  = "replicas"   // copies of each block the mesh keeps, 1 to 16
	paramSync      = "sync"       // "true": a flush waits until every copy holds the data
	paramBlockSize = "block_size" // bytes, a power of two from 4K to 4M
)

// k8sParamPrefix starts the parameters Kubernetes' provisioner adds on
// its own (PVC and PV names); they are not weft's to check.
const k8sParamPrefix = "csi.storage.k8s.io/"

// volumeParams are the parameters of a CreateVolume; a zero field was not
// given.
type volumeParams struct {
	replicas  int
	sync      *bool
	blockSize int64
}

func parseParams(m map[string]string) (volumeParams, error) {
	var p volumeParams
	for k, v := range m {
		switch {
		case k == paramReplicas:
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > api.MaxReplicas {
				return p, fmt.Errorf("parameter %s=%q: want 1 to %d", k, v, api.MaxReplicas)
			}
			p.replicas = n
		case k == paramSync:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return p, fmt.Errorf("parameter %s=%q: want true or false", k, v)
			}
			p.sync = &b
		case k == paramBlockSize:
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < api.MinBlockSize || n > api.MaxBlockSize || n&(n-1) != 0 {
				return p, fmt.Errorf("parameter %s=%q: want a power of two from %d to %d", k, v, api.MinBlockSize, api.MaxBlockSize)
			}
			p.blockSize = n
		case strings.HasPrefix(k, k8sParamPrefix):
		default:
			return p, fmt.Errorf("parameter %q unknown (want %s, %s, %s)", k, paramReplicas, paramSync, paramBlockSize)
		}
	}
	return p, nil
}

// matches reports whether disk d is what p asks for.
func (p volumeParams) matches(d api.DiskInfo) bool {
	return (p.replicas == 0 || p.replicas == d.Replicas) &&
		(p.sync == nil || *p.sync == d.Sync) &&
		(p.blockSize == 0 || p.blockSize == d.BlockSize)
}

// defaultVolumeSize is the size of a volume whose request names none.
const defaultVolumeSize = 1 << 30

// volumeSize is the size of a new disk of block size bs for a capacity
// range: the required bytes rounded up to whole blocks (disks are whole
// blocks), or defaultVolumeSize, lowered to the limit if that is below.
// ok is false when no whole number of blocks fits the range.
func volumeSize(r *capacityRange, bs int64) (size int64, ok bool) {
	req, lim := r.required, r.limit
	if req == 0 {
		size = defaultVolumeSize
		if lim > 0 && lim < size {
			size = lim / bs * bs
		}
	} else {
		size = (req + bs - 1) / bs * bs
	}
	return size, r.fits(size) && size > 0
}

// capacityRange is a request's CapacityRange, 0 for an absent bound.
type capacityRange struct{ required, limit int64 }

func (r capacityRange) fits(size int64) bool {
	return size >= r.required && (r.limit == 0 || size <= r.limit)
}
