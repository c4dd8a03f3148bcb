package nbd

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
)

// errAborted ends a negotiation the client aborted (NBD_OPT_ABORT).
var errAborted = errors.New("client aborted negotiation")

// session is what a successful negotiation hands to transmission.
type session struct {
	conn  net.Conn // the TLS connection once STARTTLS has run
	name  string
	exp   Export
	flags uint16 // transmission flags sent to the client
}

// negotiation is the fixed-newstyle handshake of one connection. Every read
// is bounded (maxOptionLen) and the whole phase runs under the deadline the
// caller set on conn.
type negotiation struct {
	s        *Server
	raw      net.Conn // the connection the server tracks (conn may wrap it in TLS)
	conn     net.Conn
	client   netip.Addr
	log      *slog.Logger
	tls      bool
	noZeroes bool
}

func (n *negotiation) run(ctx context.Context) (*session, error) {
	hello := make([]byte, 18)
	binary.BigEndian.PutUint64(hello, magicInit)
	binary.BigEndian.PutUint64(hello[8:], magicOpt)
	binary.BigEndian.PutUint16(hello[16:], flagFixedNewstyle|flagNoZeroes)
	if _, err := n.conn.Write(hello); err != nil {
		return nil, fmt.Errorf("send greeting: %w", err)
	}
	var cf [4]byte
	if _, err := io.ReadFull(n.conn, cf[:]); err != nil {
		return nil, fmt.Errorf("read client flags: %w", err)
	}
	flags := binary.BigEndian.Uint32(cf[:])
	if flags&^clientKnown != 0 {
		return nil, fmt.Errorf("unknown client flags %#x", flags)
	}
	if n.s.cfg.TLSRequired && flags&clientFixedNewstyle == 0 {
		return nil, errors.New("client without fixed newstyle cannot do the TLS the server requires")
	}
	n.noZeroes = flags&clientNoZeroes != 0

	hdr := make([]byte, optHeaderLen)
	for {
		if _, err := io.ReadFull(n.conn, hdr); err != nil {
			return nil, fmt.Errorf("read option: %w", err)
		}
		oh, err := decodeOptionHeader(hdr)
		if err != nil {
			return nil, err
		}
		if oh.Length > maxOptionLen {
			return nil, fmt.Errorf("option %s: %d bytes of data, limit %d", optName(oh.Option), oh.Length, maxOptionLen)
		}
		data := make([]byte, oh.Length)
		if _, err := io.ReadFull(n.conn, data); err != nil {
			return nil, fmt.Errorf("read option %s: %w", optName(oh.Option), err)
		}
		sess, err := n.option(ctx, oh.Option, data)
		if sess != nil || err != nil {
			return sess, err
		}
	}
}

// option answers one option. It returns a session to enter transmission,
// an error to close the connection, or neither to read the next option.
func (n *negotiation) option(ctx context.Context, opt uint32, data []byte) (*session, error) {
	if n.s.cfg.TLSRequired && !n.tls {
		switch opt {
		case optStartTLS, optAbort:
		case optExportName:
			return nil, errors.New("NBD_OPT_EXPORT_NAME before the TLS the server requires")
		default:
			return nil, n.reply(opt, repErrTLSReqd, []byte("TLS required: use NBD_OPT_STARTTLS"))
		}
	}
	switch opt {
	case optExportName:
		return n.exportName(ctx, data)
	case optAbort:
		// The client may already have gone; the reply is a courtesy.
		n.reply(opt, repAck, nil)
		return nil, errAborted
	case optList:
		return nil, n.list(ctx, data)
	case optStartTLS:
		return nil, n.startTLS(ctx, data)
	case optInfo, optGo:
		return n.infoGo(ctx, opt, data)
	case optStructuredReply:
		if len(data) != 0 {
			return nil, n.reply(opt, repErrInvalid, []byte("NBD_OPT_STRUCTURED_REPLY takes no data"))
		}
		return nil, n.reply(opt, repErrUnsup, []byte("simple replies only"))
	}
	return nil, n.reply(opt, repErrUnsup, []byte("option not supported"))
}

// reply sends one option reply; msg is the data (an error message for
// error replies).
func (n *negotiation) reply(opt, typ uint32, data []byte) error {
	if _, err := n.conn.Write(optionReply(opt, typ, data)); err != nil {
		return fmt.Errorf("reply to %s: %w", optName(opt), err)
	}
	return nil
}

func (n *negotiation) exportName(ctx context.Context, data []byte) (*session, error) {
	if len(data) > maxNameLen {
		return nil, fmt.Errorf("NBD_OPT_EXPORT_NAME: name of %d bytes", len(data))
	}
	name := string(data)
	exp, err := n.open(ctx, name)
	if err != nil {
		// The option has no error reply: the protocol says to close.
		n.log.Info("nbd export refused", "export", name, "err", err)
		return nil, fmt.Errorf("open %q: %w", name, err)
	}
	flags := transmissionFlags(exp)
	b := make([]byte, 10, 10+124)
	binary.BigEndian.PutUint64(b, uint64(exp.Size()))
	binary.BigEndian.PutUint16(b[8:], flags)
	if !n.noZeroes {
		b = b[:10+124]
	}
	if _, err := n.conn.Write(b); err != nil {
		exp.Close()
		return nil, fmt.Errorf("NBD_OPT_EXPORT_NAME reply: %w", err)
	}
	return &session{conn: n.conn, name: name, exp: exp, flags: flags}, nil
}

func (n *negotiation) list(ctx context.Context, data []byte) error {
	if len(data) != 0 {
		return n.reply(optList, repErrInvalid, []byte("NBD_OPT_LIST takes no data"))
	}
	names, err := n.s.cfg.Exports.List(ctx, n.client)
	if err != nil {
		n.log.Warn("nbd list exports", "err", err)
		return n.reply(optList, repErrInvalid, []byte("cannot list exports"))
	}
	for _, name := range names {
		b := make([]byte, 4+len(name))
		binary.BigEndian.PutUint32(b, uint32(len(name)))
		copy(b[4:], name)
		if err := n.reply(optList, repServer, b); err != nil {
			return err
		}
	}
	return n.reply(optList, repAck, nil)
}

func (n *negotiation) startTLS(ctx context.Context, data []byte) error {
	switch {
	case len(data) != 0:
		return n.reply(optStartTLS, repErrInvalid, []byte("NBD_OPT_STARTTLS takes no data"))
	case n.s.cfg.TLS == nil:
		return n.reply(optStartTLS, repErrUnsup, []byte("TLS not configured"))
	case n.tls:
		return n.reply(optStartTLS, repErrInvalid, []byte("TLS already negotiated"))
	}
	if err := n.reply(optStartTLS, repAck, nil); err != nil {
		return err
	}
	tc := tls.Server(n.conn, n.s.cfg.TLS)
	// The deadline set on the raw connection bounds the handshake too.
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	n.conn, n.tls = tc, true
	return nil
}

func (n *negotiation) infoGo(ctx context.Context, opt uint32, data []byte) (*session, error) {
	req, err := decodeInfoRequest(data)
	if err != nil {
		return nil, n.reply(opt, repErrInvalid, []byte(err.Error()))
	}
	exp, err := n.open(ctx, req.Name)
	if err != nil {
		typ := repErrUnknown
		if errors.Is(err, ErrPolicy) {
			typ = repErrPolicy
		}
		n.log.Info("nbd export refused", "export", req.Name, "err", err)
		return nil, n.reply(opt, typ, []byte(err.Error()))
	}
	flags := transmissionFlags(exp)
	ok := false
	defer func() {
		if !ok || opt == optInfo {
			exp.Close()
			n.s.transmitting(n.raw, "")
		}
	}()
	b := make([]byte, 12)
	binary.BigEndian.PutUint16(b, infoExport)
	binary.BigEndian.PutUint64(b[2:], uint64(exp.Size()))
	binary.BigEndian.PutUint16(b[10:], flags)
	if err := n.reply(opt, repInfo, b); err != nil {
		return nil, err
	}
	for _, typ := range req.Infos {
		var text string
		switch typ {
		case infoName:
			text = req.Name
		case infoDescription:
			text = exp.Description()
		default:
			continue
		}
		if text == "" {
			continue
		}
		b := make([]byte, 2+len(text))
		binary.BigEndian.PutUint16(b, typ)
		copy(b[2:], text)
		if err := n.reply(opt, repInfo, b); err != nil {
			return nil, err
		}
	}
	// Block sizes are sent whether asked or not: any alignment works (the
	// head does read-modify-write), the disk's block size is the one that
	// avoids it, and payloads are bounded by MaxPayload.
	b = make([]byte, 14)
	binary.BigEndian.PutUint16(b, infoBlockSize)
	binary.BigEndian.PutUint32(b[2:], 1)
	binary.BigEndian.PutUint32(b[6:], uint32(min(max(exp.BlockSize(), 1), MaxPayload)))
	binary.BigEndian.PutUint32(b[10:], MaxPayload)
	if err := n.reply(opt, repInfo, b); err != nil {
		return nil, err
	}
	if err := n.reply(opt, repAck, nil); err != nil {
		return nil, err
	}
	ok = true
	if opt == optInfo {
		return nil, nil
	}
	return &session{conn: n.conn, name: req.Name, exp: exp, flags: flags}, nil
}

// open opens the export name for the client, the connection counted on
// that export from before the open: a DisconnectIf meanwhile (its rules
// changed under the open) sees it and closes it, where an open that
// passed under the old rules would otherwise start transmitting after
// the new ones were enforced.
func (n *negotiation) open(ctx context.Context, name string) (Export, error) {
	n.s.transmitting(n.raw, name)
	exp, err := n.s.cfg.Exports.Open(ctx, name, n.client)
	if err != nil {
		n.s.transmitting(n.raw, "")
	}
	return exp, err
}

// transmissionFlags are the flags advertised for an export.
//
// CAN_MULTI_CONN is safe for every export because Exports.Open returns
// exports that share their state for one name (the node hands every
// connection to a disk the same volume.Head: one overlay, one lock): a read
// on any connection sees every write replied to on any other, and a FLUSH
// on any connection makes every write replied to before it durable, not
// only its own connection's. Read-only exports never change.
func transmissionFlags(exp Export) uint16 {
	f := tflagHasFlags | tflagSendFlush | tflagSendFUA | tflagCanMultiConn
	if exp.ReadOnly() {
		f |= tflagReadOnly
	} else {
		f |= tflagSendTrim | tflagSendWriteZeroes
	}
	return f
}
