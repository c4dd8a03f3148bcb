package node

import "github.com/weft-mesh/weft/api"

// The client of the local API lives in api; these names keep node's
// callers and tests compiling.

// Client is api.Client.
type Client = api.Client

// NewClient is api.NewClient.
func NewClient(home string) *Client { return api.NewClient(home) }

// ExportReader is api.ExportReader.
type ExportReader = api.ExportReader

// Record is api.Record.
type Record = api.Record

// Record kinds of the export stream: see api.
const (
	RecordData = api.RecordData
	RecordHole = api.RecordHole
)

// ErrTruncated is api.ErrTruncated.
var ErrTruncated = api.ErrTruncated
