package scsi

import (
	"encoding/binary"
	"fmt"
)

// Sense keys.
const (
	keyNoSense        = 0x00
	keyNotReady       = 0x02
	keyMediumError    = 0x03
	keyIllegalRequest = 0x05
	keyDataProtect    = 0x07
	keyAbortedCommand = 0x0b
	keyMiscompare     = 0x0e
)

// senseError is a command's failure: the sense key, additional sense
// code and qualifier it is answered with, and for ILLEGAL REQUEST in a
// CDB or parameter list the byte and bit at fault (the sense-key-specific
// field pointer initiators and conformance tests read).
type senseError struct {
	key, asc, ascq byte
	// field is set for a field pointer: inCDB says whether it points into
	// the CDB (C/D=1) or the parameter list; byteAt and bit (bit < 0: no
	// bit pointer) locate it.
	field  bool
	inCDB  bool
	byteAt uint16
	bit    int8
	// info, when infoValid, goes in the INFORMATION field (the offset of
	// the first miscompare).
	info      uint32
	infoValid bool
}

func (e *senseError) Error() string {
	return fmt.Sprintf("sense key %#x asc/ascq %#02x/%#02x", e.key, e.asc, e.ascq)
}

// The fixed sense answers.
var (
	senseInvalidOpcode         = &senseError{key: keyIllegalRequest, asc: 0x20}
	senseLBAOutOfRange         = &senseError{key: keyIllegalRequest, asc: 0x21}
	senseParamListLength       = &senseError{key: keyIllegalRequest, asc: 0x1a}
	senseInvalidFieldInIU      = &senseError{key: keyIllegalRequest, asc: 0x0e, ascq: 0x03}
	senseSavingNotSupported    = &senseError{key: keyIllegalRequest, asc: 0x39}
	senseWriteProtected        = &senseError{key: keyDataProtect, asc: 0x27}
	senseSpaceAllocationFailed = &senseError{key: keyDataProtect, asc: 0x27, ascq: 0x07}
	senseReadError             = &senseError{key: keyMediumError, asc: 0x11}
	senseWriteError            = &senseError{key: keyMediumError, asc: 0x0c}
	senseAborted               = &senseError{key: keyAbortedCommand}
)

// invalidCDBField is ILLEGAL REQUEST, INVALID FIELD IN CDB, pointing at
// byte b (and bit, or -1 for the whole byte).
func invalidCDBField(b int, bit int) *senseError {
	return &senseError{key: keyIllegalRequest, asc: 0x24, field: true, inCDB: true, byteAt: uint16(b), bit: int8(bit)}
}

// invalidParamField is ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST,
// pointing at byte b of the parameter list.
func invalidParamField(b int) *senseError {
	return &senseError{key: keyIllegalRequest, asc: 0x26, field: true, byteAt: uint16(min(b, 0xffff)), bit: -1}
}

// miscompare is MISCOMPARE DURING VERIFY OPERATION at byte offset off of
// the compared data.
func miscompare(off int) *senseError {
	return &senseError{key: keyMiscompare, asc: 0x1d, info: uint32(off), infoValid: true}
}

// fixedSenseLen is the length of the fixed-format sense data we send.
const fixedSenseLen = 18

// bytes encodes e as fixed-format sense data (SPC-4 4.5.3), current error.
func (e *senseError) bytes() []byte {
	s := make([]byte, fixedSenseLen)
	s[0] = 0x70
	s[2] = e.key
	if e.infoValid {
		s[0] |= 0x80
		binary.BigEndian.PutUint32(s[3:7], e.info)
	}
	s[7] = fixedSenseLen - 8
	s[12], s[13] = e.asc, e.ascq
	if e.field {
		s[15] = 0x80 // SKSV
		if e.inCDB {
			s[15] |= 0x40
		}
		if e.bit >= 0 {
			s[15] |= 0x08 | byte(e.bit)&0x07
		}
		binary.BigEndian.PutUint16(s[16:18], e.byteAt)
	}
	return s
}

// checkCondition is the Result of a command failed with e.
func checkCondition(e *senseError) Result {
	return Result{Status: StatusCheckCondition, Sense: e.bytes()}
}

// senseFor encodes err's sense: a senseError's own, else a MEDIUM ERROR
// (a handler's error is always a senseError; this is the safety net).
func senseFor(err error) []byte {
	if e, ok := err.(*senseError); ok {
		return e.bytes()
	}
	return senseReadError.bytes()
}
