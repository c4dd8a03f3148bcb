package iscsi

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/weft-mesh/weft/node/scsi"
)

// Login stages (CSG and NSG).
const (
	stageSecurity    = 0
	stageOperational = 1
	stageFullFeature = 3
)

// Login status class and detail (RFC 7143 section 11.13.5).
type loginStatus uint16

const (
	statusSuccess          loginStatus = 0x0000
	statusInitiatorError   loginStatus = 0x0200
	statusAuthFailure      loginStatus = 0x0201
	statusNotAuthorized    loginStatus = 0x0202
	statusNotFound         loginStatus = 0x0203
	statusUnsupportedVer   loginStatus = 0x0205
	statusTooManyConns     loginStatus = 0x0206
	statusMissingParameter loginStatus = 0x0207
	statusNoSession        loginStatus = 0x020a
	statusTargetError      loginStatus = 0x0300
	statusUnavailable      loginStatus = 0x0301
	statusOutOfResources   loginStatus = 0x0302
)

// loginError refuses a login with a status.
type loginError struct {
	status loginStatus
	err    error
}

func (e *loginError) Error() string {
	return fmt.Sprintf("login status %#04x: %v", uint16(e.status), e.err)
}

func refuse(status loginStatus, format string, args ...any) error {
	return &loginError{status, fmt.Errorf(format, args...)}
}

// params are a connection's negotiated operational parameters.
type params struct {
	digests digests
	// sendMax is the initiator's MaxRecvDataSegmentLength: the largest
	// data segment the target may send.
	sendMax          int
	maxBurst         int
	firstBurst       int
	initialR2T       bool
	immediateData    bool
	defaultTime2Wait int
}

func defaultParams() params {
	return params{sendMax: 8192, maxBurst: 262144, firstBurst: 65536, initialR2T: true, immediateData: true, defaultTime2Wait: 2}
}

// loginState is one connection's progress through the login phase.
type loginState struct {
	first    bool
	auth     CHAP // the target's secrets; zero when it needs none
	authed   bool
	method   string // the AuthMethod agreed
	chap     *chapExchange
	declared bool // the target declared its own keys
}

// login runs the login phase and reports whether the connection reached
// the full feature phase. A refused login gets a Login Response with the
// status, then the connection closes.
func (c *conn) login() bool {
	deadline := time.Now().Add(c.srv.cfg.LoginTimeout)
	c.nc.SetDeadline(deadline)
	st := &loginState{first: true}
	var buf []byte // continued request data (C bit)
	for {
		p, err := readPDU(c.r, c.srv.cfg.MaxRecvDataSegmentLength, digests{})
		if err != nil {
			c.log.Debug("login: read", "err", err)
			c.srv.observeLogin("error")
			return false
		}
		if p.opcode() != opLoginReq {
			c.log.Info("login: not a login request", "opcode", p.opcode())
			c.srv.observeLogin("error")
			return false
		}
		if len(buf)+len(p.data) > maxTextData {
			c.refuseLogin(p, refuse(statusInitiatorError, "login data over %d bytes", maxTextData))
			return false
		}
		buf = append(buf, p.data...)
		if p.flags()&0x40 != 0 { // C: more data follows
			c.sendLogin(p, st, 0, nil, false, statusSuccess)
			continue
		}
		keys, err := parseText(buf)
		buf = nil
		if err != nil {
			c.refuseLogin(p, refuse(statusInitiatorError, "%w", err))
			return false
		}
		c.log.Debug("login request", "flags", p.flags(), "keys", keys.withoutCHAP())
		done, err := c.loginStep(p, st, keys)
		if err != nil {
			c.refuseLogin(p, err)
			return false
		}
		if done {
			c.nc.SetDeadline(time.Time{})
			c.srv.observeLogin("ok")
			c.log.Info("iscsi session started", "discovery", c.discovery,
				"header_digest", c.p.digests.header, "data_digest", c.p.digests.data)
			return true
		}
	}
}

// loginStep answers one login request and reports whether the connection
// moved to the full feature phase.
func (c *conn) loginStep(p *pdu, st *loginState, keys textKeys) (bool, error) {
	if p.bhs[3] > 0 { // version-min: the target speaks version 0 only
		return false, refuse(statusUnsupportedVer, "version-min %d", p.bhs[3])
	}
	transit := p.flags()&0x80 != 0
	csg, nsg := (p.flags()>>2)&3, p.flags()&3
	if st.first {
		if err := c.firstLogin(p, st, keys); err != nil {
			return false, err
		}
	} else if !equalISID(p, c.isid) || p.itt() != c.loginITT {
		return false, refuse(statusInitiatorError, "ISID or ITT changed during login")
	}
	var reply textKeys
	switch csg {
	case stageSecurity:
		r, err := c.security(st, keys)
		if err != nil {
			return false, err
		}
		reply = append(reply, r...)
	case stageOperational:
		if st.auth.Enabled() && !st.authed {
			return false, refuse(statusAuthFailure, "CHAP required: the initiator skipped the security stage")
		}
		st.authed = true
	default:
		return false, refuse(statusInitiatorError, "login stage %d", csg)
	}
	r, err := c.negotiate(keys, st, csg)
	if err != nil {
		return false, err
	}
	reply = append(reply, r...)
	if st.first && !c.discovery {
		reply = append(reply, keyValue{"TargetPortalGroupTag", strconv.Itoa(int(c.srv.cfg.PortalGroupTag))})
	}
	st.first = false
	if transit && (nsg != stageOperational && nsg != stageFullFeature || nsg <= csg) {
		return false, refuse(statusInitiatorError, "transit from stage %d to %d", csg, nsg)
	}
	// The target agrees to move on once authentication is over.
	if transit && !st.authed {
		transit = false
	}
	if transit && nsg == stageFullFeature {
		if err := c.srv.register(c); err != nil {
			return false, err
		}
		c.registered = true
		// After register, so that a DisconnectIf that this check does not
		// see sees the session instead.
		if !c.discovery && c.srv.rules.Load() != c.loginRules {
			return false, refuse(statusUnavailable, "the target's access rules changed during the login: log in again")
		}
		if !c.discovery {
			d, err := c.srv.cfg.Targets.Open(c.ctx, c.target, c.initiator, c.client)
			if err != nil {
				return false, openRefusal(err)
			}
			c.disk = d
			c.lu = scsi.NewLU(d, scsi.LUInfo{Serial: serialOf(c.target), Atomicity: c.srv.atomicityOf(c.target)})
		}
		c.sendLogin(p, st, nsg, reply, true, statusSuccess)
		return true, nil
	}
	c.sendLogin(p, st, nsg, reply, transit, statusSuccess)
	return false, nil
}

// firstLogin reads the keys of a session's first login request.
func (c *conn) firstLogin(p *pdu, st *loginState, keys textKeys) error {
	copy(c.isid[:], p.bhs[8:14])
	c.loginITT = p.itt()
	// The login's CmdSN is the session's first; its ExpStatSN picks the
	// target's first StatSN.
	c.expCmdSN, c.statSN = p.u32(24), p.u32(28)
	if tsih := uint16(p.bhs[14])<<8 | uint16(p.bhs[15]); tsih != 0 {
		// One connection per session: a login adding a connection to an
		// existing session is refused.
		if !c.srv.hasSession(tsih) {
			return refuse(statusNoSession, "TSIH %d: no such session", tsih)
		}
		return refuse(statusTooManyConns, "TSIH %d: MaxConnections is 1", tsih)
	}
	name, ok := keys.get("InitiatorName")
	if !ok || name == "" {
		return refuse(statusMissingParameter, "no InitiatorName")
	}
	c.initiator = name
	c.log = c.log.With("initiator", name)
	switch t, _ := keys.get("SessionType"); t {
	case "", "Normal":
	case "Discovery":
		c.discovery = true
		return nil
	default:
		return refuse(statusInitiatorError, "SessionType %q", t)
	}
	target, ok := keys.get("TargetName")
	if !ok || target == "" {
		return refuse(statusMissingParameter, "no TargetName")
	}
	// iSCSI names compare case-insensitively (RFC 3722): keep the lower
	// case form, so that the LU's serial and identifiers, reinstatement
	// and Disconnect see one name however the initiator typed it.
	target = strings.ToLower(target)
	c.target = target
	c.log = c.log.With("target", target)
	c.loginRules = c.srv.rules.Load()
	auth, err := c.srv.cfg.Targets.Access(c.ctx, target, name, c.client)
	if err != nil {
		return openRefusal(err)
	}
	st.auth = auth
	return nil
}

func openRefusal(err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return &loginError{statusNotFound, err}
	case errors.Is(err, ErrNotAllowed):
		return &loginError{statusNotAuthorized, err}
	}
	return &loginError{statusTargetError, err}
}

// security answers the keys of the security stage: AuthMethod, then the
// CHAP exchange.
func (c *conn) security(st *loginState, keys textKeys) (textKeys, error) {
	var reply textKeys
	if m, ok := keys.get("AuthMethod"); ok && st.method == "" {
		switch {
		case st.auth.Enabled() && listHas(m, "CHAP"):
			st.method = "CHAP"
		case st.auth.Enabled():
			return nil, refuse(statusAuthFailure, "CHAP required, the initiator offers %q", m)
		case listHas(m, "None"):
			st.method = "None"
			st.authed = true
		default:
			return nil, refuse(statusAuthFailure, "AuthMethod %q: the target has no CHAP secret", m)
		}
		reply = append(reply, keyValue{"AuthMethod", st.method})
	}
	if st.method == "" && !st.auth.Enabled() {
		st.authed = true // no AuthMethod offered and none needed
	}
	if st.method != "CHAP" {
		return reply, nil
	}
	if a, ok := keys.get("CHAP_A"); ok {
		if !listHas(a, "5") {
			return nil, refuse(statusAuthFailure, "CHAP_A %q: the target speaks MD5 (5) only", a)
		}
		st.chap = &chapExchange{cfg: st.auth}
		reply = append(reply, st.chap.start()...)
		return reply, nil
	}
	if _, ok := keys.get("CHAP_R"); ok {
		if st.chap == nil || st.authed {
			return nil, refuse(statusAuthFailure, "CHAP_R out of turn")
		}
		r, err := st.chap.verify(keys)
		if err != nil {
			return nil, &loginError{statusAuthFailure, err}
		}
		st.authed = true
		reply = append(reply, r...)
	}
	return reply, nil
}

// sendLogin sends a Login Response.
func (c *conn) sendLogin(req *pdu, st *loginState, nsg byte, keys textKeys, transit bool, status loginStatus) {
	r := newPDU(opLoginResp, 0, req.itt())
	csg := (req.flags() >> 2) & 3
	if transit {
		r.bhs[1] = 0x80 | csg<<2 | nsg
	} else {
		r.bhs[1] = csg << 2
	}
	copy(r.bhs[8:14], req.bhs[8:14])
	if transit && nsg == stageFullFeature {
		r.bhs[14], r.bhs[15] = byte(c.tsih>>8), byte(c.tsih)
	}
	r.bhs[36], r.bhs[37] = byte(status>>8), byte(status)
	r.data = encodeText(keys)
	c.send(r, true)
}

func (c *conn) refuseLogin(req *pdu, err error) {
	var le *loginError
	if !errors.As(err, &le) {
		le = &loginError{statusTargetError, err}
	}
	result := "error"
	switch le.status {
	case statusAuthFailure:
		result = "auth"
	case statusNotAuthorized:
		result = "authz"
	case statusNotFound:
		result = "not_found"
	}
	c.srv.observeLogin(result)
	c.log.Warn("iscsi login refused", "status", fmt.Sprintf("%#04x", uint16(le.status)), "err", le.err)
	r := newPDU(opLoginResp, (req.flags()>>2&3)<<2, req.itt())
	copy(r.bhs[8:14], req.bhs[8:14])
	r.bhs[36], r.bhs[37] = byte(le.status>>8), byte(le.status)
	c.send(r, false)
}

func equalISID(p *pdu, isid [6]byte) bool { return [6]byte(p.bhs[8:14]) == isid }

// negotiate answers the operational keys (RFC 7143 section 13) and sets
// the connection's parameters; the target's own declarations go out once.
func (c *conn) negotiate(keys textKeys, st *loginState, csg byte) (textKeys, error) {
	cfg := c.srv.cfg
	num := func(v string, lo, hi int) (int, bool) {
		n, err := strconv.Atoi(v)
		return n, err == nil && n >= lo && n <= hi
	}
	// Numeric keys: the range of an offer (one outside is answered
	// Reject) and the target's answer to an offer n, which sets its
	// parameter.
	numeric := map[string]struct {
		lo, hi int
		answer func(n int) int
	}{
		"MaxBurstLength":     {512, 1<<24 - 1, func(n int) int { c.p.maxBurst = min(n, cfg.MaxBurstLength); return c.p.maxBurst }},
		"FirstBurstLength":   {512, 1<<24 - 1, func(n int) int { c.p.firstBurst = min(n, cfg.FirstBurstLength); return c.p.firstBurst }},
		"DefaultTime2Wait":   {0, 3600, func(n int) int { c.p.defaultTime2Wait = max(n, 2); return c.p.defaultTime2Wait }},
		"MaxOutstandingR2T":  {1, 65535, func(int) int { return 1 }},
		"MaxConnections":     {1, 65535, func(int) int { return 1 }},
		"ErrorRecoveryLevel": {0, 3600, func(int) int { return 0 }},
		"DefaultTime2Retain": {0, 3600, func(int) int { return 0 }},
	}
	// Yes/No keys the initiator's offer decides: InitialR2T is an OR
	// with the target's No, ImmediateData an AND with its Yes.
	boolean := map[string]*bool{"InitialR2T": &c.p.initialR2T, "ImmediateData": &c.p.immediateData}
	// Keys answered the same whatever the offer.
	fixed := map[string]string{
		"DataPDUInOrder": "Yes", "DataSequenceInOrder": "Yes", "IFMarker": "No", "OFMarker": "No",
		"IFMarkInt": "Irrelevant", "OFMarkInt": "Irrelevant",
	}
	var reply textKeys
	for _, kv := range keys {
		k, v := kv.key, kv.value
		answer := "NotUnderstood"
		switch {
		case slices.Contains([]string{"InitiatorName", "TargetName", "SessionType", "InitiatorAlias", "AuthMethod",
			"CHAP_A", "CHAP_N", "CHAP_R", "CHAP_I", "CHAP_C"}, k):
			continue // answered by the login itself, or declarative
		case k == "HeaderDigest" || k == "DataDigest":
			answer = "Reject"
			for _, d := range splitList(v) {
				if d == "None" || d == "CRC32C" {
					answer = d
					break
				}
			}
			if k == "HeaderDigest" {
				c.p.digests.header = answer == "CRC32C"
			} else {
				c.p.digests.data = answer == "CRC32C"
			}
		case k == "MaxRecvDataSegmentLength":
			n, ok := num(v, 512, 1<<24-1)
			if !ok {
				return nil, refuse(statusInitiatorError, "%s=%q", k, v)
			}
			c.p.sendMax = n
			continue // declarative: the target declares its own below
		case numeric[k].answer != nil:
			answer = "Reject"
			if n, ok := num(v, numeric[k].lo, numeric[k].hi); ok {
				answer = strconv.Itoa(numeric[k].answer(n))
			}
		case boolean[k] != nil:
			answer = "Reject"
			if v == "Yes" || v == "No" {
				*boolean[k] = v == "Yes"
				answer = v
			}
		case fixed[k] != "":
			answer = fixed[k]
		}
		reply = append(reply, keyValue{k, answer})
	}
	if c.p.firstBurst > c.p.maxBurst {
		c.p.firstBurst = c.p.maxBurst
	}
	if !st.declared && csg == stageOperational {
		st.declared = true
		reply = append(reply, keyValue{"MaxRecvDataSegmentLength", strconv.Itoa(cfg.MaxRecvDataSegmentLength)})
	}
	return reply, nil
}

func splitList(v string) []string {
	var out []string
	for len(v) > 0 {
		i := 0
		for i < len(v) && v[i] != ',' {
			i++
		}
		out = append(out, v[:i])
		if i == len(v) {
			break
		}
		v = v[i+1:]
	}
	return out
}
