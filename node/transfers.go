package node

import "github.com/weft-mesh/weft/api"

// TransferOptions is api.TransferOptions.
type TransferOptions = api.TransferOptions

// TransferInfo is api.TransferInfo.
type TransferInfo = api.TransferInfo

// TargetProgress is api.TargetProgress.
type TargetProgress = api.TargetProgress
