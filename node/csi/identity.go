package csi

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// GetPluginInfo names the plugin.
func (p *Plugin) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	v := p.cfg.Version
	if v == "" {
		v = "dev"
	}
	return &csi.GetPluginInfoResponse{Name: PluginName, VendorVersion: v}, nil
}

// GetPluginCapabilities says the plugin has a controller service. It
// reports no topology: a disk is reachable from the node that owns it,
// and ownership moves (weft disk move), so no fixed segment describes it.
func (p *Plugin) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{Capabilities: []*csi.PluginCapability{{
		Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{
			Type: csi.PluginCapability_Service_CONTROLLER_SERVICE,
		}},
	}}}, nil
}

// Probe is ready when the daemon answers.
func (p *Plugin) Probe(ctx context.Context, _ *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	if _, err := p.cfg.Volumes.Status(ctx); err != nil {
		return nil, grpcError(err, "probe the daemon")
	}
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(true)}, nil
}
