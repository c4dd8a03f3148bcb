package iscsi

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// Limits of text key=value data (RFC 7143 section 6.1: keys up to 63
// bytes; values up to 255 bytes, or 8192 for binary values such as CHAP
// challenges).
const (
	maxKeyLen   = 63
	maxValueLen = 8192
	maxKeys     = 128
	// maxTextData bounds a text or login request's data once its
	// continuations are joined.
	maxTextData = 64 << 10
)

var errText = errors.New("iscsi: malformed text data")

// keyValue is one key=value pair, in the order received.
type keyValue struct{ key, value string }

// textKeys are the pairs of one text or login exchange.
type textKeys []keyValue

// withoutCHAP returns the pairs with CHAP's values left out, for logs: a
// challenge and its response are enough for an offline dictionary attack
// on the secret.
func (k textKeys) withoutCHAP() textKeys {
	out := make(textKeys, len(k))
	for i, kv := range k {
		if strings.HasPrefix(kv.key, "CHAP_") {
			kv.value = "(left out)"
		}
		out[i] = kv
	}
	return out
}

// parseText decodes NUL-terminated key=value pairs. A key given twice,
// an empty or overlong key or value, and too many keys are errors.
func parseText(data []byte) (textKeys, error) {
	if len(data) > maxTextData {
		return nil, fmt.Errorf("%w: %d bytes", errText, len(data))
	}
	var kv textKeys
	seen := map[string]bool{}
	for len(data) > 0 {
		i := bytes.IndexByte(data, 0)
		var item []byte
		if i < 0 {
			// The last pair's NUL may be in padding the codec removed.
			item, data = data, nil
		} else {
			item, data = data[:i], data[i+1:]
		}
		if len(item) == 0 {
			continue // padding
		}
		k, v, ok := bytes.Cut(item, []byte("="))
		if !ok || len(k) == 0 || len(k) > maxKeyLen || len(v) > maxValueLen {
			return nil, fmt.Errorf("%w: pair %.40q", errText, item)
		}
		key := string(k)
		if seen[key] {
			return nil, fmt.Errorf("%w: key %s given twice", errText, key)
		}
		seen[key] = true
		if len(kv) == maxKeys {
			return nil, fmt.Errorf("%w: more than %d keys", errText, maxKeys)
		}
		kv = append(kv, keyValue{key, string(v)})
	}
	return kv, nil
}

func (t textKeys) get(key string) (string, bool) {
	for _, kv := range t {
		if kv.key == key {
			return kv.value, true
		}
	}
	return "", false
}

// encodeText is parseText's inverse.
func encodeText(kv textKeys) []byte {
	var b []byte
	for _, p := range kv {
		b = append(b, p.key...)
		b = append(b, '=')
		b = append(b, p.value...)
		b = append(b, 0)
	}
	return b
}

// listHas reports whether a comma-separated list of values has v.
func listHas(list, v string) bool {
	for _, s := range strings.Split(list, ",") {
		if s == v {
			return true
		}
	}
	return false
}
