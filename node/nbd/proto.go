package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Magic numbers of the protocol (doc/proto.md of the NBD project).
const (
	magicInit        uint64 = 0x4e42444d41474943 // "NBDMAGIC"
	magicOpt         uint64 = 0x49484156454F5054 // "IHAVEOPT"
	magicOptReply    uint64 = 0x0003e889045565a9
	magicRequest     uint32 = 0x25609513
	magicSimpleReply uint32 = 0x67446698
)

// Handshake flags (server) and client flags.
const (
	flagFixedNewstyle uint16 = 1 << 0
	flagNoZeroes      uint16 = 1 << 1

	clientFixedNewstyle uint32 = 1 << 0
	clientNoZeroes      uint32 = 1 << 1
	clientKnown                = clientFixedNewstyle | clientNoZeroes
)

// Options.
const (
	optExportName      uint32 = 1
	optAbort           uint32 = 2
	optList            uint32 = 3
	optStartTLS        uint32 = 5
	optInfo            uint32 = 6
	optGo              uint32 = 7
	optStructuredReply uint32 = 8
)

// Option reply types.
const (
	repAck    uint32 = 1
	repServer uint32 = 2
	repInfo   uint32 = 3

	repErrUnsup   uint32 = 1<<31 + 1
	repErrPolicy  uint32 = 1<<31 + 2
	repErrInvalid uint32 = 1<<31 + 3
	repErrTLSReqd uint32 = 1<<31 + 5
	repErrUnknown uint32 = 1<<31 + 6
	repErrTooBig  uint32 = 1<<31 + 9
)

// Information types of NBD_OPT_INFO and NBD_OPT_GO.
const (
	infoExport      uint16 = 0
	infoName        uint16 = 1
	infoDescription uint16 = 2
	infoBlockSize   uint16 = 3
)

// Transmission flags.
const (
	tflagHasFlags        uint16 = 1 << 0
	tflagReadOnly        uint16 = 1 << 1
	tflagSendFlush       uint16 = 1 << 2
	tflagSendFUA         uint16 = 1 << 3
	tflagSendTrim        uint16 = 1 << 5
	tflagSendWriteZeroes uint16 = 1 << 6
	tflagCanMultiConn    uint16 = 1 << 8
)

// Commands.
const (
	cmdRead        uint16 = 0
	cmdWrite       uint16 = 1
	cmdDisc        uint16 = 2
	cmdFlush       uint16 = 3
	cmdTrim        uint16 = 4
	cmdWriteZeroes uint16 = 6
)

// Command flags.
const (
	cmdFlagFUA    uint16 = 1 << 0
	cmdFlagNoHole uint16 = 1 << 1
)

// Errno values carried in replies. They are the Linux values, which the
// protocol fixes whatever the platform.
const (
	errnoOK        uint32 = 0
	errnoPerm      uint32 = 1
	errnoIO        uint32 = 5
	errnoNoMem     uint32 = 12
	errnoInval     uint32 = 22
	errnoNoSpc     uint32 = 28
	errnoOverflow  uint32 = 75
	errnoShutdown  uint32 = 108
	errnoNotSupp   uint32 = 95
	errnoUnhandled uint32 = errnoInval
)

// Wire limits.
const (
	// MaxPayload is the largest READ or WRITE the server accepts, and the
	// maximum block size it advertises.
	MaxPayload = 32 << 20
	// maxOptionLen bounds the data of one option during negotiation. The
	// largest legitimate option is NBD_OPT_GO with a 4096-byte name.
	maxOptionLen = 16 << 10
	// maxNameLen is the protocol's limit on export names.
	maxNameLen = 4096
	// requestLen and simpleReplyLen are the fixed sizes of a request and
	// of a simple reply header.
	requestLen     = 28
	simpleReplyLen = 16
	// optHeaderLen is the size of an option header (magic, option, length).
	optHeaderLen = 16
)

// errBadMagic is returned by the decoders for input that is not NBD.
var errBadMagic = errors.New("bad magic")

// optionHeader is a client's option header.
type optionHeader struct {
	Option uint32
	Length uint32
}

// decodeOptionHeader decodes the 16 bytes of an option header.
func decodeOptionHeader(b []byte) (optionHeader, error) {
	if len(b) != optHeaderLen {
		return optionHeader{}, fmt.Errorf("option header: %d bytes, want %d", len(b), optHeaderLen)
	}
	if m := binary.BigEndian.Uint64(b); m != magicOpt {
		return optionHeader{}, fmt.Errorf("option header: %w %#x", errBadMagic, m)
	}
	return optionHeader{Option: binary.BigEndian.Uint32(b[8:]), Length: binary.BigEndian.Uint32(b[12:])}, nil
}

// infoRequest is the data of NBD_OPT_INFO and NBD_OPT_GO.
type infoRequest struct {
	Name  string
	Infos []uint16
}

// decodeInfoRequest decodes the data of NBD_OPT_INFO or NBD_OPT_GO: a
// 32-bit name length, the name, a 16-bit count and that many 16-bit
// information types. Every length is checked against the data.
func decodeInfoRequest(b []byte) (infoRequest, error) {
	if len(b) < 6 {
		return infoRequest{}, fmt.Errorf("info request: %d bytes, want at least 6", len(b))
	}
	n := binary.BigEndian.Uint32(b)
	if n > maxNameLen || uint64(n)+6 > uint64(len(b)) {
		return infoRequest{}, fmt.Errorf("info request: name length %d does not fit %d bytes", n, len(b))
	}
	name := string(b[4 : 4+n])
	rest := b[4+n:]
	count := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != 2*count {
		return infoRequest{}, fmt.Errorf("info request: %d information types in %d bytes", count, len(rest))
	}
	req := infoRequest{Name: name, Infos: make([]uint16, count)}
	for i := range req.Infos {
		req.Infos[i] = binary.BigEndian.Uint16(rest[2*i:])
	}
	return req, nil
}

// request is one transmission-phase request header.
type request struct {
	Flags  uint16
	Type   uint16
	Cookie uint64
	Offset uint64
	Length uint32
}

// decodeRequest decodes the 28 bytes of a request header.
func decodeRequest(b []byte) (request, error) {
	if len(b) != requestLen {
		return request{}, fmt.Errorf("request: %d bytes, want %d", len(b), requestLen)
	}
	if m := binary.BigEndian.Uint32(b); m != magicRequest {
		return request{}, fmt.Errorf("request: %w %#x", errBadMagic, m)
	}
	return request{
		Flags:  binary.BigEndian.Uint16(b[4:]),
		Type:   binary.BigEndian.Uint16(b[6:]),
		Cookie: binary.BigEndian.Uint64(b[8:]),
		Offset: binary.BigEndian.Uint64(b[16:]),
		Length: binary.BigEndian.Uint32(b[24:]),
	}, nil
}

// encodeRequest is decodeRequest's inverse, for tests and clients.
func encodeRequest(r request) []byte {
	b := make([]byte, requestLen)
	binary.BigEndian.PutUint32(b, magicRequest)
	binary.BigEndian.PutUint16(b[4:], r.Flags)
	binary.BigEndian.PutUint16(b[6:], r.Type)
	binary.BigEndian.PutUint64(b[8:], r.Cookie)
	binary.BigEndian.PutUint64(b[16:], r.Offset)
	binary.BigEndian.PutUint32(b[24:], r.Length)
	return b
}

// putSimpleReply writes a simple reply header into b[:simpleReplyLen].
func putSimpleReply(b []byte, errno uint32, cookie uint64) {
	binary.BigEndian.PutUint32(b, magicSimpleReply)
	binary.BigEndian.PutUint32(b[4:], errno)
	binary.BigEndian.PutUint64(b[8:], cookie)
}

// optionReply encodes an option reply with its data.
func optionReply(option, typ uint32, data []byte) []byte {
	b := make([]byte, 20+len(data))
	binary.BigEndian.PutUint64(b, magicOptReply)
	binary.BigEndian.PutUint32(b[8:], option)
	binary.BigEndian.PutUint32(b[12:], typ)
	binary.BigEndian.PutUint32(b[16:], uint32(len(data)))
	copy(b[20:], data)
	return b
}

func optName(o uint32) string {
	switch o {
	case optExportName:
		return "EXPORT_NAME"
	case optAbort:
		return "ABORT"
	case optList:
		return "LIST"
	case optStartTLS:
		return "STARTTLS"
	case optInfo:
		return "INFO"
	case optGo:
		return "GO"
	case optStructuredReply:
		return "STRUCTURED_REPLY"
	}
	return fmt.Sprintf("option(%d)", o)
}

// The pools must reach MaxPayload.
var _ [MaxPayload - 1<<maxPoolShift]struct{}
var _ [1<<maxPoolShift - MaxPayload]struct{}
