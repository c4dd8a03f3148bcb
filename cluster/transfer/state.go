package transfer

// State is where a transfer, or one target of a push, stands. Its text is
// part of the CLI's JSON contract.
type State string

// The states of a transfer: Running until it ends in one of the others.
const (
	Running   State = "running"
	Done      State = "done"
	Failed    State = "failed"
	Cancelled State = "cancelled"
)
