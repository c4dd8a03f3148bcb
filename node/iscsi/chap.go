package iscsi

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// CHAP is a target's CHAP secrets (RFC 1994 with MD5, as RFC 7143 section
// 12.1.3 uses it). The zero value means no CHAP.
type CHAP struct {
	// User and Secret are what the initiator must prove it knows.
	User, Secret string
	// TargetUser and TargetSecret, if set, are what the target answers an
	// initiator's challenge with (mutual CHAP).
	TargetUser, TargetSecret string
}

// Enabled reports whether the target requires CHAP.
func (c CHAP) Enabled() bool { return c.Secret != "" }

// chapChallengeLen is the length of the target's challenge; RFC 7143
// asks for challenges at least as long as the hash (16 bytes).
const chapChallengeLen = 16

// maxCHAPBinary bounds a decoded CHAP_C or CHAP_R from the initiator.
const maxCHAPBinary = 1024

// chapResponse is MD5(identifier || secret || challenge).
func chapResponse(id byte, secret string, challenge []byte) []byte {
	h := md5.New()
	h.Write([]byte{id})
	h.Write([]byte(secret))
	h.Write(challenge)
	return h.Sum(nil)
}

// decodeCHAPBinary decodes a CHAP binary value: 0x hex or 0b base64.
func decodeCHAPBinary(s string) ([]byte, error) {
	var b []byte
	var err error
	switch {
	case strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X"):
		h := s[2:]
		if len(h)%2 == 1 {
			h = "0" + h
		}
		b, err = hex.DecodeString(h)
	case strings.HasPrefix(s, "0b") || strings.HasPrefix(s, "0B"):
		b, err = base64.StdEncoding.DecodeString(s[2:])
	default:
		return nil, fmt.Errorf("chap value %.20q: not 0x hex or 0b base64", s)
	}
	if err != nil {
		return nil, fmt.Errorf("chap value: %w", err)
	}
	if len(b) == 0 || len(b) > maxCHAPBinary {
		return nil, fmt.Errorf("chap value of %d bytes", len(b))
	}
	return b, nil
}

func encodeCHAPBinary(b []byte) string { return "0x" + hex.EncodeToString(b) }

// chapExchange is the target's side of one CHAP authentication.
type chapExchange struct {
	cfg       CHAP
	id        byte
	challenge []byte
}

// start picks the identifier and challenge the target sends.
func (x *chapExchange) start() textKeys {
	var b [chapChallengeLen + 1]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	x.id, x.challenge = b[0], b[1:]
	return textKeys{
		{"CHAP_A", "5"},
		{"CHAP_I", strconv.Itoa(int(x.id))},
		{"CHAP_C", encodeCHAPBinary(x.challenge)},
	}
}

// errCHAP is a failed authentication: status 0x0201.
type errCHAP struct{ why string }

func (e errCHAP) Error() string { return "chap: " + e.why }

// verify checks the initiator's CHAP_N and CHAP_R and, if the initiator
// challenged the target (CHAP_I, CHAP_C), returns the target's answer.
func (x *chapExchange) verify(keys textKeys) (textKeys, error) {
	name, _ := keys.get("CHAP_N")
	resp, ok := keys.get("CHAP_R")
	if !ok {
		return nil, errCHAP{"no CHAP_R"}
	}
	r, err := decodeCHAPBinary(resp)
	if err != nil {
		return nil, errCHAP{err.Error()}
	}
	want := chapResponse(x.id, x.cfg.Secret, x.challenge)
	userOK := subtle.ConstantTimeCompare([]byte(name), []byte(x.cfg.User)) == 1
	if subtle.ConstantTimeCompare(r, want) != 1 || !userOK {
		return nil, errCHAP{fmt.Sprintf("wrong name or secret for %q", name)}
	}
	ci, hasI := keys.get("CHAP_I")
	cc, hasC := keys.get("CHAP_C")
	if !hasI && !hasC {
		// One-way: the target's own secret, if any, proves it only to
		// initiators that ask.
		return nil, nil
	}
	if !hasI || !hasC {
		return nil, errCHAP{"CHAP_I without CHAP_C or the reverse"}
	}
	if x.cfg.TargetSecret == "" {
		return nil, errCHAP{"mutual CHAP asked but the target has no secret"}
	}
	id, err := strconv.ParseUint(ci, 0, 8)
	if err != nil {
		return nil, errCHAP{"CHAP_I " + ci}
	}
	c, err := decodeCHAPBinary(cc)
	if err != nil {
		return nil, errCHAP{err.Error()}
	}
	// RFC 7143 section 12.1.3: a target must refuse its own challenge
	// reflected back at it.
	if subtle.ConstantTimeCompare(c, x.challenge) == 1 {
		return nil, errCHAP{"the initiator reflected the target's challenge"}
	}
	return textKeys{
		{"CHAP_N", x.cfg.TargetUser},
		{"CHAP_R", encodeCHAPBinary(chapResponse(byte(id), x.cfg.TargetSecret, c))},
	}, nil
}
