package csi

import (
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// fsTypes are the file systems a mount volume may ask for; "" means ext4.
var fsTypes = map[string]bool{"": true, "ext4": true}

// accessModes are the modes a volume can be used in: a disk is written
// by the one node that owns it, so every mode is a single-node one.
var accessModes = map[csi.VolumeCapability_AccessMode_Mode]bool{
	csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER:        true,
	csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY:   true,
	csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER: true,
}

// checkCapability says why the plugin cannot serve c, nil if it can.
func checkCapability(c *csi.VolumeCapability) error {
	if c == nil {
		return fmt.Errorf("empty volume capability")
	}
	mode := c.GetAccessMode().GetMode()
	if !accessModes[mode] {
		return fmt.Errorf("access mode %v: weft serves single-node modes only", mode)
	}
	switch t := c.GetAccessType().(type) {
	case *csi.VolumeCapability_Block:
	case *csi.VolumeCapability_Mount:
		if !fsTypes[t.Mount.GetFsType()] {
			return fmt.Errorf("fs_type %q: only ext4", t.Mount.GetFsType())
		}
		if _, err := mountFlags(t.Mount.GetMountFlags()); err != nil {
			return err
		}
	default:
		return fmt.Errorf("no access type (block or mount)")
	}
	return nil
}

// checkCapabilities checks a request's capabilities, at least one.
func checkCapabilities(caps []*csi.VolumeCapability) error {
	if len(caps) == 0 {
		return invalidf("volume capabilities missing")
	}
	for _, c := range caps {
		if err := checkCapability(c); err != nil {
			return invalidf("%v", err)
		}
	}
	return nil
}

// readOnlyMode reports whether a capability's access mode only reads.
func readOnlyMode(c *csi.VolumeCapability) bool {
	return c.GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY
}
