package nbd

import "time"

// Observer is told of every transmission request once it has been served,
// for metrics. Request is called on the connection's request path, from
// several goroutines at once: it must be safe for concurrent use, must not
// block and should not allocate.
//
// op is one of the Op names. bytes is the length of the range the request
// covers (0 for a flush). d is the time the export took to serve it, FUA
// flush included; receiving the payload and sending the reply are not
// counted. err is nil if the client was told of success; otherwise it is
// the export's error, or for a request refused before reaching the export
// (outside the export, read-only, malformed) ErrInvalid, ErrReadOnly or
// ErrNoSpace with d = 0. Unknown commands are not observed.
type Observer interface {
	Request(op string, bytes int, d time.Duration, err error)
}

// Operation names given to an Observer.
const (
	OpRead        = "read"
	OpWrite       = "write"
	OpFlush       = "flush"
	OpTrim        = "trim"
	OpWriteZeroes = "write_zeroes"
)

// opName names a command for an Observer; "" for commands not observed.
func opName(cmd uint16) string {
	switch cmd {
	case cmdRead:
		return OpRead
	case cmdWrite:
		return OpWrite
	case cmdFlush:
		return OpFlush
	case cmdTrim:
		return OpTrim
	case cmdWriteZeroes:
		return OpWriteZeroes
	}
	return ""
}

// observedLen is the bytes an Observer is told a request covers.
func observedLen(req request) int {
	if req.Type == cmdFlush {
		return 0
	}
	return int(req.Length)
}

// refusal is the error an Observer is given for a request refused with
// errno before reaching the export: the sentinel an export would have
// returned for it, so no error is allocated per refusal.
func refusal(errno uint32) error {
	switch errno {
	case errnoPerm:
		return ErrReadOnly
	case errnoNoSpc:
		return ErrNoSpace
	}
	return ErrInvalid
}

// observeRefused tells the Observer, if any, of a request check refused.
func (t *transmission) observeRefused(req request, errno uint32) {
	if t.obs == nil {
		return
	}
	if op := opName(req.Type); op != "" {
		t.obs.Request(op, observedLen(req), 0, refusal(errno))
	}
}
